"""Patch campaigns: advisories applied to many services in ordered waves, inside a
maintenance window, with approvals, deferral, resume and converge.

A campaign run is a run of kind "campaign" in the state store. Its journal holds one step
per service (`service:NAME`, begun with the child rollout's run id before that rollout is
created), the approval (`approval`, begun when the run reaches the approval point, ended by
`campaign approve`), deferrals and converges (`converge:NAME`), typed in `campaign.journal`.
Each service is patched by its own child run of kind "rollout" (`Rollout`, params
`campaign_run`). `resume` continues from the journal: finished services are skipped, a child
in flight is resumed with `Rollout.resume` (also after kill -9).

Rules kept here:
- no flip outside the window: the child's `may_flip` hook checks the window (and manual
  approval) right before the flip; a refused flip leaves the patched+verified standby as
  it is, the child "deferred", and the rest of the campaign deferred (exit 6);
- services are touched by one run at a time: the campaign refuses (LockHeld, exit 5) when a
  service is locked or belongs to another unfinished campaign;
- the campaign itself holds the lock `campaign:NAME` while a process drives it.
"""

from __future__ import annotations

import hashlib
import json
import secrets
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from orchestrator.campaign.journal import (
    APPROVAL,
    DEFERRED,
    DEFERRED_OUTCOME,
    DONE,
    ROLLED_BACK,
    Journal,
    Outcome,
    ServiceOutcome,
    Step,
    StepKind,
)
from orchestrator.campaign.model import (
    Campaign,
    advisories_for,
    campaign_from_dict,
    load_campaign,
    packages_for,
)
from orchestrator.campaign.notify import Notifier
from orchestrator.campaign.runs import (
    NothingToContinue,
    RunningElsewhere,
    run_to_continue,
    running_elsewhere,
)
from orchestrator.campaign.state import (
    ServiceProgress,
    check_conflicts,
    engine_result_from_run,
    service_states,
    standby_versions,
)
from orchestrator.campaign.waves import resolve_waves
from orchestrator.config.loaded import LoadedConfig
from orchestrator.errors import (
    BadInput,
    BluegreenError,
    LockHeld,
    OutsideWindow,
    RolledBack,
)
from orchestrator.inventory import Fleet
from orchestrator.routers.base import Router
from orchestrator.schedule.window import window_state
from orchestrator.secrets import safe_url
from orchestrator.state.base import StateStore
from orchestrator.state.models import RESUMABLE_STATUSES, Run
from orchestrator.state.registry import StateLocation
from orchestrator.traffic.failpoints import Crash

if TYPE_CHECKING:
    from orchestrator.rollout.runner import Rollout

AWAITING = "awaiting_approval"


@dataclass(frozen=True)
class CampaignEvent:
    """Progress for the CLI. kind: wave | service | step | progress | info."""

    kind: str
    message: str
    data: dict[str, Any] = field(default_factory=dict)


@dataclass
class CampaignResult:
    run_id: str
    name: str
    status: str  # done | failed | deferred | awaiting_approval | converge_pending | aborted
    message: str
    exit_code: int
    services: dict[str, ServiceProgress] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {
            "run_id": self.run_id,
            "campaign": self.name,
            "status": self.status,
            "message": self.message,
            "exit_code": self.exit_code,
            "services": {name: state.as_dict() for name, state in self.services.items()},
        }


_SETTLE_ATTEMPTS = 40
_SETTLE_DELAY_S = 0.25
"""`run --continue` losing the lock race to a holder whose lock row is not committed yet
looks again this often (10 s in all) before it reports the lock as held."""


def campaign_lock(name: str) -> str:
    return f"campaign:{name}"  # also read by campaign.runs.running_elsewhere


def now_utc() -> datetime:
    return datetime.now(UTC)


class CampaignRunner:
    """Drives one campaign run. Build it, then `start(campaign, file)` or `resume(run)`."""

    def __init__(
        self,
        config: LoadedConfig,
        store: StateStore,
        router: Router,
        *,
        actor: str,
        on_event: Callable[[CampaignEvent], None] | None = None,
        wait_for_window: bool = False,
        clock: Callable[[], datetime] = now_utc,
        fleet: Fleet | None = None,
        rollouts: RolloutFactory | None = None,
    ) -> None:
        self.config = config
        self._fleet = fleet  # the inventory, parsed once for the command (here if not given)
        self._rollouts = rollouts
        self._store = store
        self._router = router
        self._local = threading.local()  # a parallel wave's worker: its own store and router
        self.actor = actor
        self.on_event = on_event or (lambda _e: None)
        self.wait_for_window = wait_for_window
        self.clock = clock
        self._awaiting = False
        self._stop = threading.Event()

    @property
    def store(self) -> StateStore:
        """This thread's state store (a parallel wave's worker has its own connection)."""
        own: StateStore | None = getattr(self._local, "store", None)
        return own if own is not None else self._store

    @property
    def router(self) -> Router:
        """This thread's router (routers are not thread-safe: one per worker)."""
        own: Router | None = getattr(self._local, "router", None)
        return own if own is not None else self._router

    @property
    def fleet(self) -> Fleet:
        if self._fleet is None:
            from orchestrator.inventory import load_fleet

            self._fleet = load_fleet(self.config)
        return self._fleet

    # ---- entry points ------------------------------------------------------------------
    def run(self, campaign: Campaign, file: str, *, continue_run: bool = False
            ) -> CampaignResult | NothingToContinue | RunningElsewhere:
        """`campaign run FILE`: a new run; with `continue_run` (`--continue`, what timers
        run) the campaign's unfinished run is resumed, nothing happens once its last run
        ended (NothingToContinue), and a run another live process drives is left to it
        (RunningElsewhere)."""
        attempts = _SETTLE_ATTEMPTS if continue_run else 1
        for attempt in range(attempts):
            earlier = run_to_continue(self.store, campaign.name, file) if continue_run else None
            if isinstance(earlier, NothingToContinue):
                return earlier
            try:
                return self.resume(earlier) if earlier else self.start(campaign, Path(file))
            except LockHeld:
                # timers of several machines fire together: one runs the window, the rest
                # say who. The winner holds the lock a moment before its lock row and run
                # are committed: until they are, look again (its row, its run, or its end).
                elsewhere = running_elsewhere(self.store, campaign.name) if continue_run else None
                if elsewhere is not None:
                    return elsewhere
                if attempt + 1 >= attempts:
                    raise
                time.sleep(_SETTLE_DELAY_S)
        raise AssertionError("unreachable")  # pragma: no cover

    def start(self, campaign: Campaign, source: Path) -> CampaignResult:
        waves = resolve_waves(campaign, self.config, self.fleet)
        services = [s for w in waves for s in w]
        check_conflicts(self.store, campaign.name, services, own_run=None)
        run_id = f"campaign-{campaign.name}-{now_utc():%Y%m%dT%H%M%S}-{secrets.token_hex(2)}"
        self.store.acquire_lock(campaign_lock(campaign.name), run_id)
        params = {
            "name": campaign.name,
            "file": str(source.resolve()),
            "config": str(self.config.path),
            "campaign": storable(campaign),
            "webhooks_sha256": webhooks_digest(campaign.notify.webhooks),
            "waves": waves,
        }
        try:
            run = self.store.create_run(  # a start interleaved with another leaves one run
                run_id, "campaign", None, params, self.actor, reason=f"campaign {campaign.name}",
                exclusive_of={"name": campaign.name},
            )
        except BaseException:
            self.store.release_lock(campaign_lock(campaign.name), run_id)
            raise
        return self._drive(run, resumed=False, webhooks=list(campaign.notify.webhooks))

    def resume(self, run: Run) -> CampaignResult:
        if run.status not in RESUMABLE_STATUSES:
            raise BadInput(
                f"campaign run {run.run_id} already ended ({run.status})",
                hint="start a new run with `bluegreen campaign run FILE`",
            )
        name = str(run.params["name"])
        services = [s for w in run.params["waves"] for s in w]
        check_conflicts(self.store, name, services, own_run=run.run_id)
        self.store.acquire_lock(campaign_lock(name), run.run_id)  # takes over a dead holder
        from orchestrator.patching.ssh import remove_stale_run_dirs

        remove_stale_run_dirs()  # what the killed run left: its ansible-runner artifacts
        return self._drive(run, resumed=True, webhooks=self._stored_webhooks(run))

    # ---- the campaign ------------------------------------------------------------------
    def _stored_webhooks(self, run: Run) -> list[str]:
        """The webhooks of a run being resumed. The store keeps only their scheme and host
        (URLs often carry tokens), so they are read again from the campaign file, and used
        only if they are the very URLs the run started with."""
        digest = run.params.get("webhooks_sha256")
        if not digest:
            return []
        try:
            urls = list(load_campaign(str(run.params["file"])).notify.webhooks)
        except (BluegreenError, KeyError):
            urls = []
        if webhooks_digest(urls) == digest:
            return urls
        self._emit("warning", f"webhooks not called on this resume: {run.params.get('file')} "
                   "is gone or its webhooks changed since the run started", {})
        return []

    def _drive(self, run: Run, *, resumed: bool, webhooks: list[str]) -> CampaignResult:
        campaign = campaign_from_dict(run.params["campaign"], f"campaign run {run.run_id}")
        if resumed:
            # a resume keeps the window (and everything else) the run started with: say so
            self._emit("info", "resumed with the window the run started with: "
                       + _window_note(window_state(campaign.window, self.clock())))
        waves: list[list[str]] = run.params["waves"]
        total = sum(len(w) for w in waves)
        self._hosts_total = sum(len(self.fleet.service(s).blue) for w in waves for s in w)
        result = CampaignResult(run.run_id, campaign.name, "running", "", 0)
        notifier = Notifier(
            webhooks,
            timeout=campaign.notify.timeout_seconds,
            retries=campaign.notify.retries,
            campaign=campaign.name,
            run_id=run.run_id,
            audit_head=partial(audit_head_text, self.config.state),
        )
        self._notifier = notifier
        crashed = False
        notifier.send("started", resumed=resumed, services=total, waves=len(waves))
        try:
            self._run_waves(run, campaign, waves, result)
            if result.status == "running" and campaign.retention.converge:
                self._converge_all(run, campaign, waves, result)
            if result.status == "running":
                result.status, result.exit_code = "done", 0
                result.message = f"campaign {campaign.name}: {total} services patched"
                self.store.finish_run(run.run_id, "done", result.message)
                states = service_states(self.store, run.run_id, waves)
                notifier.send("done", services={n: st.as_dict() for n, st in states.items()})
        except _Aborted as exc:
            result.status, result.message, result.exit_code = "aborted", str(exc), 1
        except Crash:  # a simulated kill -9 (tests): no cleanup at all
            crashed = True
            raise
        except BaseException as exc:  # bugs, Ctrl-C: the journal allows `campaign resume`
            if isinstance(exc, BluegreenError):
                result.exit_code = exc.exit_code
            notifier.send("failed", error=f"{type(exc).__name__}: {exc}")
            raise
        finally:
            notifier.close()
            lock = None if crashed else self.store.get_lock(campaign_lock(campaign.name))
            if lock is not None and lock.run_id == run.run_id:
                self.store.release_lock(campaign_lock(campaign.name), run.run_id)
        result.services = service_states(self.store, run.run_id, waves)
        return result

    def _run_waves(
        self, run: Run, campaign: Campaign, waves: list[list[str]], result: CampaignResult
    ) -> None:
        ends = Journal(self.store, run.run_id).ended()
        if campaign.approval.mode == "manual" and campaign.approval.at == "before_patch":
            if not self._approved(run, campaign):
                return self._await_approval(run, campaign, result)
        done = sum(1 for w in waves for s in w if Step.of_service(s) in ends)
        total = sum(len(w) for w in waves)
        first_failure: int | None = None
        for wi, names in enumerate(waves):
            wave = campaign.waves[wi]
            self._emit(
                "wave",
                f"wave {wi + 1}/{len(waves)}: {', '.join(names)} "
                f"(max_parallel={wave.max_parallel}, on_failure={wave.on_failure})",
                {"wave": wi + 1, "waves": len(waves), "services": names},
            )
            todo = [(si, svc) for si, svc in enumerate(names) if Step.of_service(svc) not in ends]
            for start in range(0, len(todo), wave.max_parallel):
                batch = todo[start : start + wave.max_parallel]
                later = [s for w in waves[wi:] for s in w][batch[-1][0] + 1 :]
                self._check_not_aborted(run.run_id)
                if not self._window_open(run, campaign):
                    rest = [svc for _, svc in batch] + later
                    return self._defer(run, rest, "the maintenance window is closed", result)
                for i, (_, svc) in enumerate(batch):
                    self._emit("service", f"{svc}: start ({done + i + 1}/{total})",
                               {"service": svc})
                outcomes = self._run_batch(run, campaign, [svc for _, svc in batch], wi)
                deferred = [svc for _, svc in batch if outcomes[svc].outcome is Outcome.DEFERRED]
                failed: list[str] = []
                for si, svc in batch:
                    outcome = outcomes[svc]
                    if outcome.outcome is Outcome.DEFERRED:
                        continue
                    done += 1
                    hosts_done = self._hosts_done(run.run_id)
                    waves_done = wi + (1 if si == len(names) - 1 else 0)
                    self._emit(
                        "progress",
                        f"services {done}/{total}, waves {waves_done}/{len(waves)}, "
                        f"hosts {hosts_done}/{self._hosts_total} done",
                        {
                            "services_done": done,
                            "services": total,
                            "waves_done": waves_done,
                            "waves": len(waves),
                            "hosts_done": hosts_done,
                            "hosts": self._hosts_total,
                        },
                    )
                    if outcome.is_failure:
                        first_failure = first_failure or outcome.exit_code
                        failed.append(f"{svc} {outcome}")
                # a failure outranks a deferral: the run must not end without reporting it
                if failed and wave.on_failure == "stop" and first_failure is not None:
                    msg = (f"campaign {campaign.name}: {', '.join(failed)}; stopping "
                           "(on_failure: stop)")
                    return self._fail(run, msg, first_failure, result)
                if deferred:
                    if self._awaiting:
                        return self._await_approval(run, campaign, result)
                    return self._defer(run, deferred + later,
                                       "the window closed before the flip", result)
        if first_failure is not None:
            msg = f"campaign {campaign.name}: finished with failures (on_failure: continue)"
            return self._fail(run, msg, first_failure, result)
        return None

    def _run_batch(
        self, run: Run, campaign: Campaign, services: list[str], wave: int
    ) -> dict[str, ServiceOutcome]:
        """Outcomes of `services`, patched at the same time (one service: in this thread).
        Each worker has its own state store connection and router; all of them finish
        before this returns, also when one raises (the first error is raised then)."""
        self._awaiting = False  # set by `_may_flip` of any service of the batch
        if len(services) == 1:
            return {services[0]: self._service(run, campaign, services[0], wave)}
        from concurrent.futures import ThreadPoolExecutor

        with ThreadPoolExecutor(max_workers=len(services),
                                thread_name_prefix="campaign") as pool:
            futures = {svc: pool.submit(self._service_in_worker, run, campaign, svc, wave)
                       for svc in services}
        return {svc: f.result() for svc, f in futures.items()}

    def _service_in_worker(
        self, run: Run, campaign: Campaign, svc: str, wave: int
    ) -> ServiceOutcome:
        from orchestrator.traffic import open_router, open_store

        self._local.store = open_store(self.config)
        try:
            self._local.router = open_router(self.config)
            try:
                return self._service(run, campaign, svc, wave)
            finally:
                self._local.router.close()
                del self._local.router
        finally:
            self._local.store.close()
            del self._local.store

    def _service(self, run: Run, campaign: Campaign, svc: str, wave: int) -> ServiceOutcome:
        """Patch one service through its child rollout; what became of it."""
        from orchestrator.rollout.context import new_run_id

        step = Step.of_service(svc)
        journal = Journal(self.store, run.run_id)
        begun = journal.begun().get(step)
        engine = (self._rollouts or _real_rollout)(
            self.config,
            self.store,
            self.router,
            actor=self.actor,
            on_event=lambda ev: self._child_event(svc, ev),
            advisories=[a.model_dump(mode="json") for a in advisories_for(campaign, svc)],
            may_flip=lambda s: self._may_flip(run, campaign, s),
            fleet=self.fleet,
        )
        try:
            child = self.store.get_run(begun["child_run"]) if begun else None
            if begun and child is not None and child.status not in RESUMABLE_STATUSES:
                out = engine_result_from_run(child)
            elif begun and child is not None:
                out = engine.resume(child).as_dict()
            else:
                child_id = begun["child_run"] if begun else new_run_id(svc)
                if not begun:
                    before = standby_versions(self.config, self.router, svc, campaign,
                                              self.fleet)
                    journal.begin(step, {"child_run": child_id, "wave": wave, "before": before})
                out = engine.start(
                    svc,
                    packages_for(campaign, svc),
                    reason=f"campaign {campaign.name}",
                    run_id=child_id,
                    extra_params={"campaign_run": run.run_id, "campaign": campaign.name},
                ).as_dict()
        except OutsideWindow:
            return DEFERRED_OUTCOME
        except RolledBack as exc:
            self._notifier.send("rolled_back", service=svc, error=exc.message)
            self._end(journal, step, ROLLED_BACK, exc)
            return ROLLED_BACK
        except BluegreenError as exc:
            self._check_not_aborted(run.run_id)
            self._notifier.send("failed", service=svc, error=exc.message)
            failed = ServiceOutcome.failed(exc.exit_code)
            self._end(journal, step, failed, exc)
            return failed
        status = str(out.get("status", "done"))
        journal.end(step, {"status": status, "from": out.get("from"), "to": out.get("to"),
                           "at": _now()})
        self._emit("service", f"{svc}: {out.get('message', status)}", {"service": svc})
        return DONE if status == "done" else ServiceOutcome.failed(1)

    def _end(self, journal: Journal, step: Step, outcome: ServiceOutcome,
             exc: BluegreenError) -> None:
        if step not in journal.begun():
            journal.begin(step, {"child_run": None})
        status = str(outcome.outcome)
        journal.end(
            step,
            {"status": status, "error": exc.message, "exit_code": exc.exit_code, "at": _now()},
        )
        self._emit("service", f"{step.service}: {status}: {exc.message}",
                   {"service": step.service})

    def _hosts_done(self, run_id: str) -> int:
        journal = Journal(self.store, run_id)
        begun, ends = journal.begun(), journal.ended()
        return sum(
            len((begun.get(step) or {}).get("before") or {})
            for step in ends
            if step.kind is StepKind.SERVICE
        )

    # ---- hooks -------------------------------------------------------------------------
    def _may_flip(self, run: Run, campaign: Campaign, service: str) -> str | None:
        if campaign.approval.mode == "manual" and campaign.approval.at == "before_flip":
            if not self._approved(run, campaign):
                self._awaiting = True
                return f"awaiting manual approval (`bluegreen campaign approve {campaign.name}`)"
        state = window_state(campaign.window, self.clock())
        return None if state.open else state.reason

    def _child_event(self, service: str, ev: Any) -> None:
        if ev.step == "flip" and ev.phase == "end":
            self._notifier.send(
                "service_flipped",
                service=service,
                **{k: ev.data.get(k) for k in ("from", "to")},
            )
        noisy = ev.step == "patch" and ev.data.get("status") not in (
            "changed",
            "failed",
            "unreachable",
        )
        if ev.phase in ("begin", "end") or (ev.phase == "progress" and not noisy):
            self._emit("step", f"{service} [{ev.step}] {ev.message}", {"service": service})

    # ---- approvals, windows, deferral ----------------------------------------------------
    def _approved(self, run: Run, campaign: Campaign) -> bool:
        return APPROVAL in Journal(self.store, run.run_id).ended()

    def _await_approval(self, run: Run, campaign: Campaign, result: CampaignResult) -> None:
        journal = Journal(self.store, run.run_id)
        if APPROVAL not in journal.begun():
            journal.begin(APPROVAL, {"at": campaign.approval.at})
        msg = (
            f"campaign {campaign.name}: awaiting approval ({campaign.approval.at}); "
            f"`bluegreen campaign approve {campaign.name}` then `campaign resume {campaign.name}`"
        )
        self.store.finish_run(run.run_id, "deferred", "awaiting approval")
        result.status, result.message, result.exit_code = AWAITING, msg, 0

    def _window_open(self, run: Run, campaign: Campaign) -> bool:
        while True:
            state = window_state(campaign.window, self.clock())
            if state.open:
                return True
            if not self.wait_for_window or state.next_open is None:
                return False
            wait = (state.next_open - self.clock()).total_seconds()
            self._emit("info", f"window closed; waiting until {state.next_open.isoformat()}")
            self._stop.wait(max(1.0, min(wait, 30.0)))
            self._check_not_aborted(run.run_id)

    def _defer(self, run: Run, rest: list[str], why: str, result: CampaignResult) -> None:
        journal = Journal(self.store, run.run_id)
        journal.begin(DEFERRED, {"services": rest, "reason": why})
        journal.end(DEFERRED, {"services": rest, "reason": why})
        later = window_state(campaign_from_dict(run.params["campaign"], "campaign run")
                             .window, self.clock())
        msg = f"deferred: {why}; not flipped: {', '.join(rest)}; {_window_note(later)}"
        self.store.finish_run(run.run_id, "deferred", msg)
        self._notifier.send("deferred", services=rest, reason=why)
        result.status, result.message, result.exit_code = "deferred", msg, OutsideWindow.exit_code

    def _fail(self, run: Run, msg: str, code: int, result: CampaignResult) -> None:
        self.store.finish_run(run.run_id, "failed", msg)
        self._notifier.send("failed", error=msg)
        result.status, result.message, result.exit_code = "failed", msg, code

    def _check_not_aborted(self, run_id: str) -> None:
        run = self.store.get_run(run_id)
        if run is not None and run.status == "aborted":
            raise _Aborted(f"campaign run {run_id} was aborted: {run.result or ''}")

    def _emit(self, kind: str, message: str, data: dict[str, Any] | None = None) -> None:
        from orchestrator.inventory import OUTPUT_LOCK

        # workers of a parallel wave report through the same callback, and must not write
        # while another worker's inventory parse has swapped sys.stdout for a buffer
        with OUTPUT_LOCK:
            self.on_event(CampaignEvent(kind, message, data or {}))

    # ---- converge ------------------------------------------------------------------------
    def _converge_all(
        self, run: Run, campaign: Campaign, waves: list[list[str]], result: CampaignResult
    ) -> None:
        from orchestrator.campaign.converge import converge_service

        journal = Journal(self.store, run.run_id)
        ends = journal.ended()
        pending: list[str] = []
        for svc in (s for w in waves for s in w):
            step = Step.converge(svc)
            data = ends.get(Step.of_service(svc), {})
            if step in ends or data.get("status") != "done":
                continue
            flipped = datetime.fromisoformat(str(data["at"]))
            due = flipped + campaign.retention.keep
            if due > self.clock():
                pending.append(f"{svc} after {due.isoformat()}")
                continue
            self._check_not_aborted(run.run_id)
            self._emit("service", f"{svc}: converge the old side", {"service": svc})
            if step not in journal.begun():
                journal.begin(step, {"at": _now()})
            out = converge_service(
                self.config,
                self.store,
                self.router,
                svc,
                campaign,
                run.run_id,
                self.actor,
                expected_live=str(data.get("to")),
                fleet=self.fleet,
            )
            journal.end(step, out.as_dict())
            self._emit("service", f"{svc}: {out.message}", {"service": svc})
            if not out.ok:
                return self._fail(run, f"{svc}: converge failed: {out.message}", 3, result)
        if pending:
            msg = "patched; converge pending: " + "; ".join(pending)
            self.store.finish_run(run.run_id, "deferred", msg)
            result.status, result.message, result.exit_code = "converge_pending", msg, 0
        return None


class _Aborted(BluegreenError):
    pass


class RolloutFactory(Protocol):
    """Makes a service's child rollout (tests: one with fakes, `orchestrator.testing`)."""

    def __call__(self, config: LoadedConfig, store: StateStore, router: Router, *, actor: str,
                 on_event: Callable[[Any], None], advisories: Sequence[dict[str, Any]],
                 may_flip: Callable[[str], str | None], fleet: Fleet) -> Rollout: ...


def _real_rollout(config: LoadedConfig, store: StateStore, router: Router, *, actor: str,
                  on_event: Callable[[Any], None], advisories: Sequence[dict[str, Any]],
                  may_flip: Callable[[str], str | None], fleet: Fleet) -> Rollout:
    from orchestrator.rollout.runner import Rollout

    return Rollout(config, store, router, actor=actor, on_event=on_event,
                   advisories=advisories, may_flip=may_flip, fleet=fleet)


# ---- shared helpers ----------------------------------------------------------------------


def _now() -> str:
    return now_utc().isoformat()


def storable(campaign: Campaign) -> dict[str, Any]:
    """The campaign as kept in the run's params (and so in the audit chain and `history
    --json`): webhook URLs reduced to scheme and host, since they often carry tokens."""
    doc = campaign.model_dump(mode="json")
    doc["notify"]["webhooks"] = [safe_url(u) for u in campaign.notify.webhooks]
    return doc


def webhooks_digest(urls: Sequence[str]) -> str | None:
    """sha256 of the webhook URLs (None: there are none): lets a resume check that the
    campaign file still has the URLs the run started with, without storing them."""
    if not urls:
        return None
    return hashlib.sha256(json.dumps(list(urls)).encode()).hexdigest()


def audit_head_text(location: StateLocation) -> str | None:
    """The audit head as SEQ:HASH, for webhook events (a witness outside the store)."""
    from orchestrator.state.registry import read_head

    head = read_head(location)
    return None if head is None else f"{head.count}:{head.head_hash}"


def _window_note(state: Any) -> str:
    """"open now (closes ...)" / "closed; next opening ..." for a WindowState."""
    if state.open:
        closes = f" (closes {state.closes_at.isoformat()})" if state.closes_at else ""
        return f"open now{closes}"
    if state.next_open is None:
        return f"{state.reason}; no opening in the next weeks"
    return f"{state.reason}; next opening {state.next_open.isoformat()}"
