"""A campaign run's journal, typed: its step keys and the outcome of each service.

The store keeps a journal of begin/end records per run, keyed by text. A campaign run has
four kinds of steps; `Step` is their typed form and `str(step)` their key in the store:
- `service:NAME`  one service patched through its child rollout (begun with the child's
                  run id before that rollout exists, so a kill -9 in between resumes it);
- `converge:NAME` the old side of NAME patched and verified after the retention period;
- `approval`      begun when the run reaches its approval point, ended by `campaign approve`;
- `deferred`      the services left when the window closed (begun and ended at once).

`Outcome` is what became of one service in this process (done, failed, rolled back,
deferred); `ServiceOutcome` carries the exit code a failure maps to.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from orchestrator.errors import RolledBack
from orchestrator.state.base import StateStore


class StepKind(StrEnum):
    SERVICE = "service"
    CONVERGE = "converge"
    APPROVAL = "approval"
    DEFERRED = "deferred"


_PER_SERVICE = (StepKind.SERVICE, StepKind.CONVERGE)


@dataclass(frozen=True)
class Step:
    """One step of a campaign run's journal."""

    kind: StepKind
    service: str = ""

    def __post_init__(self) -> None:
        if (self.kind in _PER_SERVICE) != bool(self.service):
            need = "needs a" if not self.service else "has no"
            raise ValueError(f"a {self.kind} step {need} service")

    @classmethod
    def of_service(cls, service: str) -> Step:
        return cls(StepKind.SERVICE, service)

    @classmethod
    def converge(cls, service: str) -> Step:
        return cls(StepKind.CONVERGE, service)

    @classmethod
    def parse(cls, key: str) -> Step:
        """The step stored under `key` (ValueError for a key no campaign writes)."""
        kind, _, service = key.partition(":")
        return cls(StepKind(kind), service)

    def __str__(self) -> str:
        return f"{self.kind}:{self.service}" if self.service else str(self.kind)


APPROVAL = Step(StepKind.APPROVAL)
DEFERRED = Step(StepKind.DEFERRED)


class Outcome(StrEnum):
    """What became of one service of a campaign in this process."""

    DONE = "done"
    FAILED = "failed"
    ROLLED_BACK = "rolled_back"
    DEFERRED = "deferred"
    """Patched and verified, not flipped: the window closed or an approval is awaited."""


@dataclass(frozen=True)
class ServiceOutcome:
    outcome: Outcome
    exit_code: int = 0
    """The exit code this outcome gives the campaign (a failure's error's exit code)."""

    @classmethod
    def failed(cls, exit_code: int) -> ServiceOutcome:
        return cls(Outcome.FAILED, exit_code)

    @property
    def is_failure(self) -> bool:
        return self.outcome in (Outcome.FAILED, Outcome.ROLLED_BACK)

    def __str__(self) -> str:
        """As run messages say it: "done", "rolled_back", "failed:3"."""
        if self.outcome is Outcome.FAILED:
            return f"failed:{self.exit_code}"
        return str(self.outcome)


DONE = ServiceOutcome(Outcome.DONE)
DEFERRED_OUTCOME = ServiceOutcome(Outcome.DEFERRED)
ROLLED_BACK = ServiceOutcome(Outcome.ROLLED_BACK, RolledBack.exit_code)


class Journal:
    """The journal of one campaign run in the store, read and written by `Step`."""

    def __init__(self, store: StateStore, run_id: str) -> None:
        self.store = store
        self.run_id = run_id

    def begun(self) -> dict[Step, dict[str, Any]]:
        """Each step's first begin record (a resumed step is begun once more: the first
        record holds the child run id and the versions before patching)."""
        out: dict[Step, dict[str, Any]] = {}
        for e in self.store.journal(self.run_id):
            if e.phase == "begin":
                out.setdefault(Step.parse(e.step), e.data)
        return out

    def ended(self) -> dict[Step, dict[str, Any]]:
        return {
            Step.parse(e.step): e.data for e in self.store.journal(self.run_id) if e.phase == "end"
        }

    def begin(self, step: Step, data: dict[str, Any]) -> None:
        self.store.journal_begin(self.run_id, str(step), data)

    def end(self, step: Step, data: dict[str, Any]) -> None:
        self.store.journal_end(self.run_id, str(step), data)
