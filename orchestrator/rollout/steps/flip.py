"""The flip step: traffic to the verified standby through the kernel (`move_traffic`),
which asks the campaign's window and approval last, right before the router changes; then
the old side drains, bounded."""

from __future__ import annotations

from orchestrator.errors import RouterError
from orchestrator.rollout.context import RunContext
from orchestrator.rollout.records import FlipRecord
from orchestrator.rollout.steps.base import NothingToResume
from orchestrator.traffic import FlipRequest, move_traffic


class Flip(NothingToResume):
    name = "flip"

    def run(self, ctx: RunContext) -> FlipRecord:
        service, live, standby = ctx.service, ctx.standing_plan.live, ctx.standing_plan.standby
        # The window and approval (`may_flip`) are asked by the kernel, under the traffic
        # lock, after it completed (or cancelled) a flip a crash interrupted, after the gate
        # and the host recheck, right before the router changes: only when traffic still has
        # to move, and never before a wait for the lock (the window may close meanwhile).
        may_flip = ctx.may_flip
        outcome = move_traffic(ctx.store, ctx.router, FlipRequest(
            service=service, command="rollout.flip", reason=f"run {ctx.run_id}",
            actor=ctx.actor, to=standby, run_id=ctx.run_id,
            recheck_hosts=ctx.tools.recheck(ctx.config, service, ctx.fleet),
            verified_generation=ctx.verified_generation,
            still_allowed=(lambda: may_flip(service)) if may_flip is not None else None,
        ))
        if not outcome.changed:  # resumed after the router had flipped
            return FlipRecord(live, standby, recovered=True)
        # the old side keeps serving requests already in flight: wait for them, bounded
        try:
            drained = ctx.router.drain(service, live, ctx.config.router.drain_seconds)
            sessions_left: int | None = drained.sessions_left
        except RouterError as exc:
            ctx.emit("flip", "info", f"drain of {live} not measured: {exc.message}")
            sessions_left = None
        return FlipRecord(live, standby, seconds=round(outcome.seconds, 4),
                          confirmed_by=tuple(outcome.confirmed_by),
                          old_side_sessions_left=sessions_left)
