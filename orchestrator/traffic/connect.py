"""What every traffic command opens: the config's state store and router, the actor, the
side named on the command line. Standard library only (the rollback fast path)."""

from __future__ import annotations

import getpass
from pathlib import Path
from typing import Protocol

from orchestrator.errors import BadInput
from orchestrator.routers.base import Router
from orchestrator.routers.settings import AnyRouterSettings
from orchestrator.sides import SIDES, Side
from orchestrator.state.audit_settings import AuditSettings
from orchestrator.state.base import StateStore


def default_actor(actor: str | None) -> str:
    if actor:
        return actor
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "unknown"


class TrafficConfig(Protocol):
    """What the traffic commands need of a config: `LoadedConfig` (full) or
    `IncidentConfig` (the validated snapshot, see `config_snapshot`)."""

    @property
    def router(self) -> AnyRouterSettings: ...
    @property
    def state_path(self) -> Path: ...
    @property
    def audit(self) -> AuditSettings: ...
    def service(self, name: str) -> object: ...


def open_store(config: TrafficConfig) -> StateStore:
    from orchestrator.state.sqlite import SQLiteStateStore

    return SQLiteStateStore(config.state_path, audit_key_file=config.audit.key_file)


def open_router(config: TrafficConfig) -> Router:
    from orchestrator.routers.registry import make_router

    return make_router(config.router)


def parse_side(value: str | None) -> Side | None:
    if value is None:
        return None
    if value not in SIDES:
        raise BadInput(f"--to: unknown side {value!r}", hint="use blue or green")
    return "blue" if value == "blue" else "green"
