"""Router drivers by name, imported only when chosen (the rollback path starts fast).

A new driver is a new module with a class taking its settings model, plus one line in
`DRIVERS`.
"""

from __future__ import annotations

import importlib
from typing import Any

from orchestrator.errors import RouterError
from orchestrator.routers.base import Router
from orchestrator.routers.settings import CommandRouterSettings, HAProxySettings

# kind -> (module, class)
DRIVERS: dict[str, tuple[str, str]] = {
    "haproxy": ("orchestrator.routers.haproxy", "HAProxyRouter"),
    "command": ("orchestrator.routers.command", "CommandRouter"),
}


def make_router(settings: HAProxySettings | CommandRouterSettings) -> Router:
    """The router for `settings.kind`; RouterError for an unknown kind."""
    try:
        module_name, class_name = DRIVERS[settings.kind]
    except KeyError:
        raise RouterError(
            f"unknown router kind {settings.kind!r}",
            hint=f"use one of: {', '.join(sorted(DRIVERS))}",
        ) from None
    module = importlib.import_module(module_name)
    driver: Any = getattr(module, class_name)
    router: Router = driver(settings)
    return router
