"""What every traffic command opens: the config's state store and router, the actor, the
side named on the command line. Standard library only (the rollback fast path)."""

from __future__ import annotations

import getpass
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Literal, Protocol, TypeVar

from orchestrator.errors import BadInput
from orchestrator.routers.base import Router, RouterSettings
from orchestrator.sides import SIDES, Side, other_side
from orchestrator.state.audit_settings import AuditSettings
from orchestrator.state.base import StateStore
from orchestrator.state.registry import StateLocation


def default_actor(actor: str | None) -> str:
    if actor:
        return actor
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "unknown"


class TrafficConfig(Protocol):
    """What the traffic commands need of a config: `LoadedConfig` (full) or
    `IncidentConfig` (the validated snapshot, see `orchestrator.config.snapshot`)."""

    @property
    def router(self) -> RouterSettings: ...
    @property
    def state(self) -> StateLocation: ...
    @property
    def audit(self) -> AuditSettings: ...
    def service(self, name: str) -> object: ...


def open_store(config: TrafficConfig) -> StateStore:
    """The config's state store, through the backend registry (its driver imported now)."""
    from orchestrator.state.registry import open_store as open_backend

    return open_backend(config.state, audit_key_file=config.audit.key_file)


def open_router(config: TrafficConfig) -> Router:
    from orchestrator.routers.registry import make_router

    return make_router(config.router)


C = TypeVar("C", bound=TrafficConfig)


@contextmanager
def store_and_router(config: C, routers: Callable[[C], Router] | None = None
                     ) -> Iterator[tuple[StateStore, Router]]:
    """A thread's own store connection and router (neither is shared between threads),
    both closed on the way out. `routers`: how to make the router (tests: a fake)."""
    store = open_store(config)
    try:
        router = (routers or open_router)(config)
        try:
            yield store, router
        finally:
            router.close()
    finally:
        store.close()


def parse_side(value: str | None) -> Side | None:
    if value is None:
        return None
    if value not in SIDES:
        raise BadInput(f"--to: unknown side {value!r}", hint="use blue or green")
    return "blue" if value == "blue" else "green"


def side_or_default(config: TrafficConfig, service: str, side: str | None, *,
                    default: Literal["standby", "live"]) -> Side:
    """The side named on the command line (--side), else SERVICE's standby or live side
    as the router says (the router is the truth about which side is live)."""
    config.service(service)
    target = parse_side(side)
    if target is not None:
        return target
    router = open_router(config)
    try:
        live = router.live(service)
    finally:
        router.close()
    return live if default == "live" else other_side(live)
