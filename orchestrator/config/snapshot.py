"""A validated-config snapshot for the incident path (`bluegreen rollback` and `flip`).

Loading bluegreen.yml in full means PyYAML plus pydantic: about half of `bluegreen
rollback`'s start-up. An incident needs only four things from the config: which services
exist, the router settings, where the state store is, and the audit key and witnesses.
Every full `load_config()` made by the CLI leaves those four, already validated, in a
small JSON file keyed by the config file's path; the incident path uses it only when the
sha256 of the config file's current bytes equals the digest of the bytes that were
validated, and falls back to a full load otherwise. Nothing here imports pydantic or PyYAML.

Where: `$BLUEGREEN_CACHE_DIR`, else `$XDG_CACHE_HOME/bluegreen`, else `~/.cache/bluegreen`.
The directory is 0700 and each file 0600; a snapshot that is not a regular file owned by
the current user, or is writable by anyone else, is ignored (never trusted, never fatal).
"""

from __future__ import annotations

import hashlib
import json
import os
import stat
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Protocol

from orchestrator import __version__
from orchestrator.config.location import MAX_CONFIG_BYTES, config_path
from orchestrator.errors import RouterError, unknown_service
from orchestrator.routers.base import RouterSettings
from orchestrator.routers.registry import settings_from_dict
from orchestrator.safe_write import UnsafePath, write_file
from orchestrator.state.audit_settings import AuditSettings
from orchestrator.state.registry import StateLocation, parse_state_url

CACHE_ENV = "BLUEGREEN_CACHE_DIR"
FORMAT = 4
"""Bump when the snapshot's content changes shape; older snapshots are then ignored."""
_MAX_SNAPSHOT_BYTES = 256 * 1024


class Validated(Protocol):
    """What a snapshot is taken of: a config validated in full (`config.loaded.LoadedConfig`;
    a Protocol, so this module never imports the loader, pydantic or PyYAML)."""

    @property
    def path(self) -> Path: ...
    @property
    def digest(self) -> str: ...
    @property
    def services(self) -> Mapping[str, Any]: ...
    @property
    def router(self) -> RouterSettings: ...
    @property
    def state(self) -> StateLocation: ...
    @property
    def audit(self) -> AuditSettings: ...
    @property
    def site_routers(self) -> Mapping[str, RouterSettings]: ...


@dataclass(frozen=True)
class IncidentConfig:
    """What `rollback` and `flip` need of bluegreen.yml: the same names as `LoadedConfig`."""

    path: Path
    service_names: tuple[str, ...]
    router: RouterSettings
    state: StateLocation
    audit: AuditSettings
    site_routers: Mapping[str, RouterSettings] = field(default_factory=dict)
    """Service -> its site's own router (sites with one: `sites.NAME.router`)."""

    def for_service(self, name: str) -> IncidentConfig:
        """As `LoadedConfig.for_service`: a service of a site with a router of its own
        flips at that router."""
        own = self.site_routers.get(name)
        return self if own is None else replace(self, router=own)

    @property
    def state_path(self) -> Path | None:
        """The SQLite file of the state store (None: a server database)."""
        return self.state.path

    def service(self, name: str) -> None:
        """BadInput (with the services that exist) unless `name` is a configured service."""
        if name not in self.service_names:
            raise unknown_service(self.path, name, self.service_names)


def cache_dir() -> Path:
    explicit = os.environ.get(CACHE_ENV)
    if explicit:
        return Path(explicit)
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "bluegreen"


def _snapshot_file(config_file: Path) -> Path:
    key = hashlib.sha256(str(config_file).encode("utf-8", "surrogateescape")).hexdigest()
    return cache_dir() / f"config-{key[:32]}.json"


def _stamp() -> str:
    return f"{FORMAT}:{__version__}"


def save(loaded: Validated) -> Path | None:
    """Write (or refresh) the snapshot of a config that was just validated in full.

    Best effort: a cache that cannot be written only costs the next rollback its speed.
    Returns the file written, or None.
    """
    target = _snapshot_file(loaded.path)
    doc = {
        "stamp": _stamp(),
        "config": str(loaded.path),
        "sha256": loaded.digest,
        "services": sorted(loaded.services),
        "router": loaded.router.as_dict(),
        "state_url": loaded.state.url,
        "audit": loaded.audit.as_dict(),
        "site_routers": {n: r.as_dict() for n, r in sorted(loaded.site_routers.items())},
    }
    text = json.dumps(doc, sort_keys=True)
    try:
        if target.is_file() and target.read_text(encoding="utf-8") == text:
            return target
        write_file(target, text, make_parents=True)
    except (OSError, UnsafePath):
        return None
    return target


def load(path: str | Path | None) -> IncidentConfig | None:
    """The snapshot of the config at `path`, if it matches the file's bytes right now."""
    cfg_path, _ = config_path(path)
    try:
        absolute = cfg_path.resolve()
        with absolute.open("rb") as fh:
            data = fh.read(MAX_CONFIG_BYTES + 1)
        doc = _read_trusted(_snapshot_file(absolute))
    except (OSError, ValueError):
        return None
    if doc is None or len(data) > MAX_CONFIG_BYTES:
        return None
    try:
        if (
            doc["stamp"] != _stamp()
            or doc["config"] != str(absolute)
            or doc["sha256"] != hashlib.sha256(data).hexdigest()
        ):
            return None
        return IncidentConfig(
            path=absolute,
            service_names=tuple(str(s) for s in doc["services"]),
            router=settings_from_dict(doc["router"]),
            state=parse_state_url(str(doc["state_url"])),
            audit=AuditSettings.from_dict(doc["audit"]),
            site_routers={str(n): settings_from_dict(r)
                          for n, r in dict(doc["site_routers"]).items()},
        )
    except (KeyError, TypeError, ValueError, RouterError):  # damaged: use the full load
        return None


def _read_trusted(file: Path) -> dict[str, Any] | None:
    """The JSON in `file` if it and its directory belong to us and nobody else may write."""
    try:
        fd = os.open(file, os.O_RDONLY | os.O_NOFOLLOW)
    except FileNotFoundError:
        return None
    with os.fdopen(fd, "rb") as fh:
        st = os.fstat(fh.fileno())
        parent = os.stat(file.parent)
        for s in (st, parent):
            if s.st_uid != os.geteuid() or s.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
                return None
        if not stat.S_ISREG(st.st_mode) or st.st_size > _MAX_SNAPSHOT_BYTES:
            return None
        doc = json.loads(fh.read())
    return doc if isinstance(doc, dict) else None
