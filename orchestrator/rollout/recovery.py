"""Where a resumed run finds traffic, and how a run that stops leaves its record and lock."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager, suppress

from orchestrator.errors import (
    Aborted,
    BluegreenError,
    Fenced,
    OutsideWindow,
    RolledBack,
    StateMismatch,
)
from orchestrator.rollout.context import RunContext
from orchestrator.state.models import RunStatus
from orchestrator.traffic import failpoints, settle


def check_traffic(ctx: RunContext, ended: set[str], begun: set[str]) -> None:
    """On resume (the precheck had ended), the kernel first completes or cancels a flip the
    crash interrupted (also the bake's automatic rollback); then router and store must agree
    with where the run left traffic."""
    plan = ctx.plan
    if plan is None:
        return
    service = ctx.service
    live = settle(ctx.store, ctx.router, service, ctx.actor)
    if "flip" in ended and "bake" in begun and live == plan.live:
        # the bake's automatic rollback had moved traffic back before the crash
        raise RolledBack(
            f"{service}: {plan.standby} degraded during bake (before the interruption);"
            f" traffic is back on {plan.live}",
            hint=f"{plan.standby} keeps the patch and is failed_live",
        )
    if "flip" in ended:
        expected = [plan.standby]
    elif "flip" in begun:
        expected = [plan.live, plan.standby]  # the flip step finds out which
    else:
        expected = [plan.live]
    if live not in expected:
        raise StateMismatch(
            f"{service}: cannot resume {ctx.run_id}: the router (and the store) say {live} "
            f"is live, the run expected {' or '.join(expected)}",
            hint="someone flipped since the run stopped; check, then start a new rollout",
        )


@contextmanager
def ends_recorded(ctx: RunContext) -> Iterator[None]:
    """However the run stops inside, its end is recorded and its lock released, and it stays
    resumable: rolled back, deferred (`may_flip` said no: the patched and verified standby
    stays), failed, interrupted (Ctrl-C, bugs), aborted (recorded by whoever aborted it;
    an error it caused is reported as the abort). A simulated kill -9 (`failpoints.Crash`)
    leaves everything as it was, as a real one would."""
    crashed = False
    try:
        yield
    except RolledBack as exc:
        finish(ctx, "rolled_back", exc.message)
        raise
    except Aborted:
        raise
    except OutsideWindow as exc:
        take_back_exposure(ctx, exc.message)
        finish(ctx, "deferred", exc.message)
        raise
    except BluegreenError as exc:
        if ctx.is_aborted():  # aborted meanwhile: that is what stopped it
            raise Aborted(ctx.aborted_message(), hint=exc.message) from exc
        if not isinstance(exc, Fenced):  # fenced: another holder owns the traffic now
            take_back_exposure(ctx, exc.message, ending="failed")
        finish(ctx, "failed", exc.message)
        raise
    except failpoints.Crash:
        crashed = True
        raise
    except BaseException as exc:
        why = f"interrupted: {type(exc).__name__}: {exc}"
        take_back_exposure(ctx, why, ending="failed")
        finish(ctx, "failed", why)
        raise
    finally:
        if not crashed:
            release(ctx)


def take_back_exposure(ctx: RunContext, why: str, *, ending: str = "deferred") -> None:
    """A run that stops after a bake step without a verdict on it (deferred: the window
    closed, an approval is awaited; failed: the flip's host recheck refused the next step,
    the router or the store failed, Ctrl-C) leaves no share of users on its patched side
    with nothing judging it: the exposure is taken back through the kernel (audited) before
    the run ends; a resume starts the steps again where they stopped. A failure to take it
    back is said, never hidden."""
    plan = ctx.plan
    if plan is None:
        return
    try:
        state = ctx.store.get_service(ctx.service)
        if state is None or state.exposed_side != plan.standby:
            return
        from orchestrator.traffic.exposure import ExposeRequest

        ctx.tools.expose(ctx.store, ctx.router, ExposeRequest(
            service=ctx.service, side=None, percent=0, command="rollout.step",
            reason=f"run {ctx.run_id}: {ending}: {why}", actor=ctx.actor, run_id=ctx.run_id))
    except BluegreenError as exc:
        ctx.emit("canary", "warning", f"{ctx.service}: the run is {ending} but its exposure "
                 f"of {plan.standby} could not be taken back: {exc.message}; run `bluegreen "
                 f"rollback {ctx.service} --reason ...` to take it back")


def finish(ctx: RunContext, status: RunStatus, message: str) -> None:
    """Record how the run ended, unless something else ended it (an abort) meanwhile, or
    another process owns it now (a newer epoch: that one records its end)."""
    run = ctx.store.get_run(ctx.run_id)
    if run is not None and run.status in ("running", "deferred"):
        with suppress(Fenced):
            ctx.store.finish_run(ctx.run_id, status, message)


def release(ctx: RunContext) -> None:
    """Release the run's lock, unless it is another run's, or this run's at a newer epoch
    (resumed elsewhere: `release_lock` leaves it)."""
    lock = ctx.store.get_lock(ctx.service)
    if lock is not None and lock.run_id == ctx.run_id:
        ctx.store.release_lock(ctx.service, ctx.run_id)
