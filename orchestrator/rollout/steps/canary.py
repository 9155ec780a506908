"""The bake's exposure steps (issue 23), before the flip: the patched standby takes a share
of new requests (`bake.steps`, through the traffic kernel's exposure), held for the step's
seconds and judged against its twin over the same window (orchestrator/analysis):

- fail (the failure limit reached): the split is cleared, the patched side recorded as
  failed (no flip may go to it before it is verified again), RolledBack naming the metric
  and both sides' values (exit 4);
- inconclusive (no data, NaN, too little volume, the source failing): never promotes; the
  step is held up to `inconclusive_seconds` past its seconds (or until `inconclusive_limit`
  errors of the source in a row), then `on_inconclusive`: rollback, or pause (the split
  cleared, the run deferred: a person resumes or aborts it);
- pass at the end of the step's seconds: the next step; after the last, the flip step
  moves 100 % and the bake watches the new live side (the last step's seconds).

Each step is journaled (`canary:N`, begin before the split changes, end with every
measurement: queries as sent, both sides' values, volumes, verdicts, why), so a resumed
run continues at the first step that did not pass, or finishes the rollback of one that
failed; a split is only ever set through the kernel, which records it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from orchestrator.analysis.judge import Budget
from orchestrator.analysis.model import Judgement
from orchestrator.analysis.window import StepWindow
from orchestrator.config.bake import AnalysisSettings, BakeStep
from orchestrator.errors import OutsideWindow, RolledBack
from orchestrator.rollout.context import RunContext
from orchestrator.rollout.records import CanaryRecord, CanaryStep
from orchestrator.rollout.steps.base import NothingToResume
from orchestrator.rollout.tools import Exposure
from orchestrator.sides import Side
from orchestrator.state.models import AuditEntryInput

PREFIX = "canary:"


class BakePaused(OutsideWindow):
    """An inconclusive step with `on_inconclusive: pause`: nothing exposed, run deferred."""


class Canary(NothingToResume):
    name = "canary"

    @staticmethod
    def applies(ctx: RunContext) -> bool:
        """Only for a service with exposure steps (the runner skips it otherwise)."""
        return bool(ctx.config.service(ctx.service).bake.exposure_steps)

    def run(self, ctx: RunContext) -> CanaryRecord:
        bake = ctx.config.service(ctx.service).bake
        steps = bake.exposure_steps
        if not steps:
            return CanaryRecord(())
        ended = _ended_steps(ctx)
        done: list[CanaryStep] = []
        for number, step in enumerate(steps, 1):
            if number in ended:
                record = CanaryStep.from_dict(ended[number])
                if record.verdict != "pass":  # a crash in its rollback: finish it
                    _stop(ctx, bake.analysis, record)
                done.append(record)
                continue
            name = f"{PREFIX}{number}"
            ctx.store.journal_begin(ctx.run_id, name, {"percent": step.percent,
                                                       "seconds": step.seconds})
            ctx.emit("canary", "progress", f"step {number}: {step.percent}% of new requests "
                     f"to {ctx.standing_plan.standby} for {step.seconds:g}s")
            _expose(ctx, ctx.standing_plan.standby, step.percent, f"bake step {number}")
            record = hold(ctx, number, step, bake.analysis)
            ctx.store.journal_end(ctx.run_id, name, record.as_dict())
            ctx.emit("canary", "progress", record.describe(), record.as_dict())
            if record.verdict != "pass":
                _stop(ctx, bake.analysis, record)
            done.append(record)
        return CanaryRecord(tuple(done))


def _ended_steps(ctx: RunContext) -> dict[int, Mapping[str, Any]]:
    ended: dict[int, Mapping[str, Any]] = {}
    for entry in ctx.store.journal(ctx.run_id):
        if entry.phase == "end" and entry.step.startswith(PREFIX):
            ended[int(entry.step[len(PREFIX):])] = entry.data
    return ended


def hold(ctx: RunContext, number: int, step: BakeStep,
         settings: AnalysisSettings) -> CanaryStep:
    """Hold the step and measure it every interval: a failure stops it at once; a pass
    counts at the end of its seconds; inconclusive holds it up to the deadline."""
    plan = ctx.standing_plan
    tools = ctx.tools
    backends = {side: ctx.config.router.backend_name(ctx.service, side)
                for side in (plan.live, plan.standby)}
    window = StepWindow(settings, ctx.router, ctx.service, canary=plan.standby,
                        baseline=plan.live, backends=backends)
    budget = Budget(failure_limit=settings.failure_limit,
                    inconclusive_limit=settings.inconclusive_limit)
    began = tools.clock()
    held_until, deadline = began + step.seconds, began + step.seconds + \
        settings.inconclusive_seconds
    judged: list[Judgement] = []
    while True:
        ctx.check_not_aborted()
        left = held_until - tools.clock()
        tools.sleep(min(settings.interval_seconds, left) if left > 0
                    else settings.interval_seconds)
        judgement = window.measure()
        judged.append(judgement)
        now = tools.clock()
        ctx.emit("canary", "progress", f"step {number} ({step.percent}%): "
                 f"{judgement.verdict}: {judgement.why}", judgement.as_dict())
        decided = budget.record(judgement) if judgement.verdict == "fail" or \
            judgement.errored or judgement.verdict == "pass" else None
        if decided == "fail":
            return _record(number, step, "fail", judgement, judged, now - began, window)
        if now < held_until:
            continue
        if judgement.verdict == "pass":
            return _record(number, step, "pass", judgement, judged, now - began, window)
        if decided == "inconclusive" or now >= deadline:
            return _record(number, step, "inconclusive", judgement, judged, now - began,
                           window)


def _record(number: int, step: BakeStep, verdict: str, last: Judgement,
            judged: list[Judgement], seconds: float, window: StepWindow) -> CanaryStep:
    return CanaryStep(number, step.percent, verdict, last.why, round(seconds, 2),
                      window.kind, tuple(j.as_dict() for j in judged))


def _expose(ctx: RunContext, side: Side | None, percent: int, why: str) -> None:
    ctx.tools.expose(ctx.store, ctx.router, Exposure(
        service=ctx.service, side=side, percent=percent, command="rollout.bake-step",
        reason=f"run {ctx.run_id}: {why}", actor=ctx.actor, run_id=ctx.run_id))


def _stop(ctx: RunContext, settings: AnalysisSettings, record: CanaryStep) -> None:
    """After a failed or inconclusive step: the split cleared, then roll back or pause.
    Always raises."""
    service, plan = ctx.service, ctx.standing_plan
    what = f"bake step {record.number} ({record.percent}% to {plan.standby})"
    _expose(ctx, None, 0, f"{what}: {record.verdict}: {record.why}")
    if record.verdict == "inconclusive" and settings.on_inconclusive == "pause":
        raise BakePaused(
            f"{service}: {what} was inconclusive ({record.why}); no user request goes to "
            f"{plan.standby} now, paused",
            hint=f"`bluegreen resume {ctx.run_id}` repeats the step; `bluegreen abort "
            f"{ctx.run_id}` ends the run")
    why = f"{what} {record.verdict}: {record.why}"
    ctx.store.record_verification(
        service, plan.standby, False, ctx.level, why,
        audit=AuditEntryInput(actor=ctx.actor, command="rollout.bake-step", service=service,
                              reason=f"run {ctx.run_id}", after={
                                  "side": plan.standby, "ok": False, "step": record.number,
                                  "verdict": record.verdict,
                                  "measurements": list(record.measurements[-1:])}))
    raise RolledBack(
        f"{service}: {why}; every user request is back on {plan.live}",
        hint=f"{plan.standby} keeps the patch and is recorded as failed: a new rollout must "
        "patch and verify it again")
