"""The flip step: traffic to the verified standby through the kernel (`move_traffic`),
after the campaign's window and approval say yes; then the old side drains, bounded."""

from __future__ import annotations

from orchestrator.errors import OutsideWindow, RouterError
from orchestrator.rollout.context import RunContext
from orchestrator.rollout.records import FlipRecord
from orchestrator.rollout.steps.base import NothingToResume
from orchestrator.traffic import FlipRequest, move_traffic, settle


class Flip(NothingToResume):
    name = "flip"

    def run(self, ctx: RunContext) -> FlipRecord:
        service, live, standby = ctx.service, ctx.standing_plan.live, ctx.standing_plan.standby
        # A flip a crash interrupted is completed (or cancelled) first: then the window and
        # approval are asked only when traffic still has to move: once here (a closed
        # window defers at once), and again by the kernel under the traffic lock, after the
        # host recheck, right before the router changes (the window may close meanwhile).
        current = settle(ctx.store, ctx.router, service, ctx.actor)
        may_flip = ctx.may_flip
        if current != standby and may_flip is not None:
            why = may_flip(service)
            if why:
                raise OutsideWindow(f"{service}: not flipping: {why}")
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
