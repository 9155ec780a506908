"""The bake's exposure steps (issue 23), before the flip: the patched standby takes a share
of new requests (`bake.steps`, through the traffic kernel's exposure), held for the step's
seconds and judged against its twin over the same window (orchestrator/analysis):

- first, the preview: only requests with `X-Bluegreen-Preview: 1` (or the cookie
  `bluegreen_preview=1`) go to the standby, and bluegreen's own requests (with the header)
  through the real frontend must be answered there;
- fail (the failure limit reached): the kernel's rollback from a step (the exposure taken
  back, the patched side failed_live: a new rollout must patch and verify it again),
  RolledBack naming the metric and both sides' values (exit 4);
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

from orchestrator.analysis.judge import Budget
from orchestrator.analysis.model import Judgement
from orchestrator.analysis.window import StepWindow
from orchestrator.config.bake import AnalysisSettings, BakeStep
from orchestrator.errors import OutsideWindow, RolledBack
from orchestrator.rollout.context import RunContext
from orchestrator.rollout.records import CANARY_PREFIX, CanaryRecord, CanaryStep, canary_steps
from orchestrator.rollout.steps.bake import auto_rollback, bake_url
from orchestrator.rollout.steps.base import NothingToResume
from orchestrator.sides import Side
from orchestrator.state.models import AuditEntryInput
from orchestrator.traffic import failpoints
from orchestrator.traffic.exposure import ExposeRequest

PREFIX = CANARY_PREFIX
PREVIEW_REQUESTS = 5


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
                record = ended[number]
                if record.verdict != "pass":  # a crash in its rollback: finish it
                    _stop(ctx, bake.analysis, record)
                done.append(record)
                continue
            if number == 1:
                self._preview(ctx)
            name = f"{PREFIX}{number}"
            ctx.store.journal_begin(ctx.run_id, name, {"percent": step.percent,
                                                       "seconds": step.seconds})
            ctx.emit("canary", "progress", f"step {number}: {step.percent}% of new requests "
                     f"to {ctx.standing_plan.standby} for {step.seconds:g}s")
            _expose(ctx, ctx.standing_plan.standby, step.percent, f"bake step {number}")
            record = hold(ctx, number, step, bake.analysis)
            ctx.store.journal_end(ctx.run_id, name, record.as_dict())
            failpoints.hit("canary:judged")
            ctx.emit("canary", "progress", record.describe(), record.as_dict())
            if record.verdict != "pass":
                _stop(ctx, bake.analysis, record)
            done.append(record)
        return CanaryRecord(tuple(done))

    @staticmethod
    def _preview(ctx: RunContext) -> None:
        """Before any user: only requests with the preview header go to the standby;
        bluegreen's own requests through the real frontend must be answered there."""
        url = bake_url(ctx.config, ctx.service)
        if not url:
            return  # no frontend to send them through
        plan = ctx.standing_plan
        backend = ctx.config.router.backend_name(ctx.service, plan.standby)
        header = ctx.config.router.confirm_header
        _expose(ctx, plan.standby, 0, "bake preview")
        for _ in range(PREVIEW_REQUESTS):
            ok, why = ctx.tools.preview(url, header, backend)
            if not ok:
                record = CanaryStep(0, 0, "fail", f"a preview request to {url}: {why}", 0.0,
                                    "preview")
                _stop(ctx, ctx.config.service(ctx.service).bake.analysis, record)
        ctx.emit("canary", "progress", f"preview: {PREVIEW_REQUESTS} requests through {url} "
                 f"with the preview header answered by {backend or plan.standby}")


def _ended_steps(ctx: RunContext) -> dict[int, CanaryStep]:
    return {s.number: s for s in canary_steps(ctx.store.journal(ctx.run_id))
            if s.verdict != "running"}


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
    may_flip = ctx.may_flip
    service = ctx.service
    ctx.tools.expose(ctx.store, ctx.router, ExposeRequest(
        service=service, side=side, percent=percent, command="rollout.step",
        reason=f"run {ctx.run_id}: {why}", actor=ctx.actor, run_id=ctx.run_id,
        recheck_hosts=ctx.tools.recheck(ctx.config, service, ctx.fleet) if side else None,
        verified_generation=ctx.verified_generation if side else None,
        still_allowed=(lambda: may_flip(service)) if may_flip and side else None))


def _stop(ctx: RunContext, settings: AnalysisSettings, record: CanaryStep) -> None:
    """After a failed or inconclusive step: roll back or pause. Always raises."""
    service, plan = ctx.service, ctx.standing_plan
    what = (f"bake step {record.number} ({record.percent}% to {plan.standby})"
            if record.number else f"bake preview of {plan.standby}")
    if record.verdict == "inconclusive" and settings.on_inconclusive == "pause":
        _expose(ctx, None, 0, f"{what}: inconclusive: {record.why}")
        raise BakePaused(
            f"{service}: {what} was inconclusive ({record.why}); no user request goes to "
            f"{plan.standby} now, paused",
            hint=f"`bluegreen resume {ctx.run_id}` repeats the step; `bluegreen abort "
            f"{ctx.run_id}` ends the run")
    why = f"{what} {record.verdict}: {record.why}"
    state = ctx.store.get_service(service)
    if state is not None and state.exposed_side == plan.standby:
        # the kernel's rollback from a step: the exposure taken back, the live side
        # unchanged, the exposed side failed_live (a new rollout patches and verifies it)
        auto_rollback(ctx, plan.live, plan.standby, why)
    # nothing exposed any more (taken back by the kernel, or a resumed rollback): the
    # side is recorded as failed so that no flip goes to it before it is verified again
    side = ctx.store.get_side(service, plan.standby)
    if side is None or side.state not in ("failed_live", "verify_failed"):
        ctx.store.record_verification(
            service, plan.standby, False, ctx.level, why,
            audit=AuditEntryInput(actor=ctx.actor, command="rollout.bake-step",
                                  service=service, reason=f"run {ctx.run_id}",
                                  after={"side": plan.standby, "ok": False,
                                         "step": record.number, "verdict": record.verdict}))
    raise RolledBack(
        f"{service}: {plan.standby} degraded during bake ({why}); traffic is back on "
        f"{plan.live}",
        hint=f"{plan.standby} keeps the patch and is recorded as failed: a new rollout must "
        "patch and verify it again")
