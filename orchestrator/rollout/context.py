"""What the steps of one run share: the config, the inventory (parsed once), the store, the
router, the tools, the run, what the run learned so far (the plan, the installed level),
and the progress callback."""

from __future__ import annotations

import secrets
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from orchestrator.config.loaded import LoadedConfig
from orchestrator.config.models import PackageSpec
from orchestrator.errors import Aborted
from orchestrator.inventory import Fleet
from orchestrator.rollout.records import Plan
from orchestrator.rollout.tools import RolloutTools
from orchestrator.routers.base import Router
from orchestrator.state.base import StateStore
from orchestrator.state.models import Run


@dataclass(frozen=True)
class Event:
    """Progress of a rollout, for the CLI to render. `step` is a step's name, "resume" or
    "host"."""

    run_id: str
    step: str
    phase: str  # begin | end | progress | info | warning
    message: str
    data: dict[str, Any] = field(default_factory=dict)


def new_run_id(service: str) -> str:
    return f"{service}-{datetime.now(UTC).strftime('%Y%m%dT%H%M%S')}-{secrets.token_hex(2)}"


@dataclass
class RunContext:
    config: LoadedConfig
    store: StateStore
    router: Router
    tools: RolloutTools
    run: Run
    actor: str
    on_event: Callable[[Event], None]
    packages: list[PackageSpec]
    """What the run was asked to install (empty: the service's security updates)."""
    level: str
    """The patch level: as asked until the patch step found what is installed."""
    advisories: list[dict[str, Any]] = field(default_factory=list)
    may_flip: Callable[[str], str | None] | None = None
    """A campaign's hook: None allows the flip, else the reason it must wait."""
    fleet: Fleet | None = None
    """The inventory, parsed once for the command (None: the tools need none, fakes)."""
    plan: Plan | None = None
    """From the precheck (None before it ran)."""
    verified_generation: int | None = None
    """The standby's generation its verification left (the verify step, or its journal on
    resume): the flip is refused when the side changed since."""
    run_again: set[str] = field(default_factory=set)
    """On resume: ended steps whose journaled record no longer stands (a verification
    journaled without its generation, before the flip bound to it): they run again."""

    @property
    def service(self) -> str:
        return self.run.service or ""

    @property
    def run_id(self) -> str:
        return self.run.run_id

    @property
    def standing_plan(self) -> Plan:
        """The plan, for the steps after the precheck."""
        if self.plan is None:  # pragma: no cover - the precheck always runs first
            raise AssertionError(f"run {self.run_id}: a step ran before the precheck")
        return self.plan

    def emit(self, step: str, phase: str, message: str,
             data: dict[str, Any] | None = None) -> None:
        self.on_event(Event(self.run_id, step, phase, message, data or {}))

    def is_aborted(self) -> bool:
        run = self.store.get_run(self.run_id)
        return run is not None and run.status == "aborted"

    def aborted_message(self) -> str:
        run = self.store.get_run(self.run_id)
        return f"run {self.run_id} was aborted: {run.result if run else ''}"

    def check_not_aborted(self) -> None:
        if self.is_aborted():
            raise Aborted(self.aborted_message())
