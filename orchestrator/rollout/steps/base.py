"""The contract of a rollout step: `run` does it and returns its record; `resume` is told,
when a run resumes, the record the step journaled before the interruption (the JSON the
journal keeps), so later steps see what it found."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Protocol

from orchestrator.rollout.context import RunContext
from orchestrator.rollout.records import StepRecord


class Step(Protocol):
    name: str

    def run(self, ctx: RunContext) -> StepRecord: ...

    def resume(self, ctx: RunContext, ended: Mapping[str, Any]) -> None: ...


class NothingToResume:
    """For steps whose record later steps do not need."""

    def resume(self, ctx: RunContext, ended: Mapping[str, Any]) -> None:
        """Nothing to restore."""
