"""The bake: the new live side under real traffic for the service's bake period, through
the load balancer (bluegreen's own requests and the LB's counters for every client);
degraded -> the automatic rollback, through the kernel like every other flip."""

from __future__ import annotations

import time

from orchestrator.config.loaded import LoadedConfig
from orchestrator.errors import (
    Aborted,
    BluegreenError,
    FlipIncomplete,
    RolledBack,
    RouterError,
    StateMismatch,
)
from orchestrator.rollout.context import RunContext
from orchestrator.rollout.records import BakeRecord
from orchestrator.rollout.steps.base import NothingToResume
from orchestrator.routers.base import Router, TrafficCounters
from orchestrator.sides import Side
from orchestrator.traffic import FlipRequest, move_traffic


class Bake(NothingToResume):
    name = "bake"

    def run(self, ctx: RunContext) -> BakeRecord:
        service, old, new = ctx.service, ctx.standing_plan.live, ctx.standing_plan.standby
        bake = ctx.config.service(service).bake
        url = bake_url(ctx.config, service)
        backend = ctx.config.router.backend_name(service, new)
        header = ctx.config.router.confirm_header
        deadline = time.monotonic() + bake.final_seconds
        sent = failed = streak = 0
        watch = TrafficWatch(ctx.router, service, new, bake.max_error_ratio,
                             bake.min_responses)
        while time.monotonic() < deadline:
            ctx.check_not_aborted()
            ok, last = ctx.tools.probe(url, header, backend) if url else (True, "")
            sent += 1
            if ok:
                streak = 0
            else:
                failed += 1
                streak += 1
                ctx.emit("bake", "progress", f"request failed: {last}")
                if streak >= bake.max_failures:
                    auto_rollback(ctx, old, new, last)
            degraded = watch.degraded()
            if degraded:
                auto_rollback(ctx, old, new, degraded)
            time.sleep(bake.interval_seconds)
        return BakeRecord(bake.final_seconds, sent, failed, url, watch.counted())


def auto_rollback(ctx: RunContext, old: Side, new: Side, why: str) -> None:
    """Back to the side that was live before the flip (rollback semantics: `new` becomes
    failed_live), through the kernel like every other flip. Always raises."""
    service = ctx.service
    ctx.emit("bake", "info", f"degraded under traffic ({why}): rolling back")
    try:
        move_traffic(ctx.store, ctx.router, FlipRequest(
            service=service, command="rollout.auto-rollback",
            reason=f"run {ctx.run_id}: bake failed: {why}", actor=ctx.actor, to=None,
            run_id=ctx.run_id,
        ))
    except FlipIncomplete as exc:  # back on `old`, recorded, but not persisted/confirmed
        raise RolledBack(
            f"{service}: {new} degraded during bake ({why}); traffic is back on {old}, "
            f"but: {exc.message}",
            hint=exc.hint,
        ) from exc
    except (Aborted, StateMismatch):
        raise
    except BluegreenError as exc:
        raise BluegreenError(
            f"{service}: {new} degraded during bake ({why}) AND the automatic rollback "
            f"to {old} failed: {exc.message}; traffic is still on {new}",
            hint=f"run `bluegreen rollback {service} --reason ...` now (it goes back to "
            f"{old}); {exc.hint or ''}".rstrip("; "),
        ) from exc
    raise RolledBack(
        f"{service}: {new} degraded during bake ({why}); traffic is back on {old}",
        hint=f"{new} keeps the patch and is failed_live: a new rollout must patch and "
        "verify it again",
    )


class TrafficWatch:
    """The new side's responses as the load balancer counts them for every client: real
    users' 5xx count against the side, not only bluegreen's own probe requests."""

    def __init__(self, router: Router, service: str, side: Side, max_ratio: float,
                 min_responses: int) -> None:
        self.router, self.service, self.side = router, service, side
        self.max_ratio, self.min_responses = max_ratio, min_responses
        self.start = self._read()
        self.seen = TrafficCounters(0, 0)

    def _read(self) -> TrafficCounters | None:
        try:
            return self.router.counters(self.service, self.side)
        except RouterError:
            return None

    def degraded(self) -> str | None:
        if self.start is None:
            return None
        now = self._read()
        if now is None:
            return None
        self.seen = now.since(self.start)
        total, errors = self.seen.responses, self.seen.errors_5xx
        if total >= self.min_responses and errors > self.max_ratio * total:
            return (f"{errors} of {total} responses of {self.side} at the load balancer were "
                    f"5xx ({errors / total:.0%}, limit {self.max_ratio:.0%})")
        return None

    def counted(self) -> TrafficCounters | None:
        """What the LB counted since the bake began (None: the router does not count)."""
        return None if self.start is None else self.seen


def bake_url(config: LoadedConfig, service: str) -> str | None:
    base = config.router.frontends.get(service)
    if not base:
        return None
    return str(base).rstrip("/") + config.service(service).bake.url_path
