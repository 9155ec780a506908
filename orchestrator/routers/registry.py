"""Router drivers by `kind`, imported only when chosen (the rollback path starts fast).

bluegreen's own drivers are a table of settings classes (`BUILTIN`, "module:Class"): a
kind found there costs one import. A third-party driver is a package that registers its
settings class (see `base.RouterSettings`) under the entry-point group `bluegreen.routers`,
named by its kind, e.g. in its pyproject.toml::

    [project.entry-points."bluegreen.routers"]
    f5 = "bluegreen_f5.settings:F5Settings"

The installed entry points are read only for a kind that is not built in, and when the
whole list is needed (the config's router union, `settings_classes`). A built-in kind is
never replaced by an entry point of the same name.
"""

from __future__ import annotations

import importlib
from typing import Any

from orchestrator.errors import RouterError
from orchestrator.routers.base import Router, RouterSettings

GROUP = "bluegreen.routers"

BUILTIN: dict[str, str] = {
    "haproxy": "orchestrator.routers.haproxy.settings:HAProxySettings",
    "command": "orchestrator.routers.command.settings:CommandRouterSettings",
    "nginx": "orchestrator.routers.nginx.settings:NginxSettings",
}


ADAPTERS: dict[str, str] = {
    "haproxy": "orchestrator.routers.haproxy.adapt:adapt_config",
}
"""`bluegreen init`: kind -> the function that adapts that load balancer's existing config."""


ROUTING_LINES: dict[str, str] = {
    "haproxy": "orchestrator.routers.haproxy.exposure:config_lines",
}
"""kind -> the function that writes a service's routing lines (the lab's haproxy.cfg):
(service, live backend, map file, percent map, exposed map) -> lines."""


def routing_lines(kind: str) -> Any:
    """The routing-lines writer of `kind` (RouterError when that driver has none)."""
    if kind not in ROUTING_LINES:
        raise RouterError(f"no routing lines for a {kind} router")
    module_name, _, name = ROUTING_LINES[kind].partition(":")
    return getattr(importlib.import_module(module_name), name)


def config_adapter(kind: str) -> Any:
    """The config adapter of `kind` (RouterError when that driver has none)."""
    if kind not in ADAPTERS:
        raise RouterError(f"`bluegreen init` cannot adapt a {kind} config yet",
                          hint=f"supported: {', '.join(sorted(ADAPTERS))}")
    module_name, _, name = ADAPTERS[kind].partition(":")
    return getattr(importlib.import_module(module_name), name)


def _load(target: str) -> type[RouterSettings]:
    module_name, _, class_name = target.partition(":")
    settings: type[RouterSettings] = getattr(importlib.import_module(module_name), class_name)
    return settings


def _entry_points() -> dict[str, Any]:
    """The installed drivers' entry points by kind (built-in kinds left out)."""
    from importlib.metadata import entry_points

    return {ep.name: ep for ep in entry_points(group=GROUP) if ep.name not in BUILTIN}


def _load_entry_point(kind: str, entry_point: Any) -> type[RouterSettings]:
    try:
        settings: type[RouterSettings] = entry_point.load()
    except Exception as exc:  # noqa: BLE001 - a broken plugin is named, never half-used
        raise RouterError(
            f"router driver {kind!r} ({entry_point.value}, entry point group {GROUP}) cannot "
            f"be loaded: {type(exc).__name__}: {exc}",
            hint="fix or uninstall the package that provides it",
        ) from exc
    return settings


def settings_class(kind: str) -> type[RouterSettings]:
    """The settings class of `kind`; RouterError for an unknown kind."""
    if kind in BUILTIN:
        return _load(BUILTIN[kind])
    found = _entry_points()
    if kind not in found:
        raise RouterError(
            f"unknown router kind {kind!r}",
            hint=f"use one of: {', '.join(sorted([*BUILTIN, *found]))}",
        )
    return _load_entry_point(kind, found[kind])


def settings_classes() -> dict[str, type[RouterSettings]]:
    """Every driver's settings class by kind: built-in ones first, then installed ones."""
    classes = {kind: _load(target) for kind, target in BUILTIN.items()}
    for kind, entry_point in sorted(_entry_points().items()):
        classes[kind] = _load_entry_point(kind, entry_point)
    return classes


def settings_from_dict(data: dict[str, Any]) -> RouterSettings:
    """Rebuild validated router settings from `as_dict()` data (the config snapshot)."""
    return settings_class(str(data.get("kind"))).from_dict(data)


def make_router(settings: RouterSettings) -> Router:
    """The router for `settings` (its driver's modules imported only now)."""
    return settings.make_router()
