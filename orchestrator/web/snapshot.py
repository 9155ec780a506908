"""What the dashboard, the JSON API and the metrics show, read in one pass.

`read_snapshot()` only reads: the router (which side is live, its counters) and the state
store (sides, runs and their journals, campaigns, the audit chain). It takes no lock the
engine needs (no run lock, no traffic lock, no write transaction: SQLite's WAL lets it read
while a writer works), so a dashboard can never slow a flip or a rollback. A router that
cannot be read is shown per service, not raised.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any

from orchestrator.advisories.measured import SideMeasurement
from orchestrator.errors import BluegreenError
from orchestrator.rollout.records import canary_steps
from orchestrator.routers.base import Router
from orchestrator.sides import SIDES, Side
from orchestrator.state.base import StateStore
from orchestrator.state.models import AuditRecord, JournalEntry, Run
from orchestrator.traffic.exposed import read_exposure
from orchestrator.traffic.status import side_view
from orchestrator.web.workers import SiteWorkers, WorkersReader

FLIP_COMMANDS = frozenset({"flip", "flip --force", "rollback", "rollout.flip",
                           "rollout.auto-rollback", "campaign.flip", "quarantine"})
DEVIATION = "deviation"
"""The audit command of a live side found deviating from its approved baseline."""
ROLLBACK_COMMANDS = frozenset({"rollback", "rollout.auto-rollback"})
AUTOMATIC_ROLLBACK = "rollout.auto-rollback"
RECENT_RUNS = 20
RECENT_AUDIT = 50
Measured = dict[tuple[str, str], SideMeasurement]


@dataclass(frozen=True)
class SideView:
    side: Side
    live: bool
    state: str
    since: str | None
    reason: str | None
    patch_level: str | None
    verified_at: str | None
    verification_ok: bool | None
    verified_after_patch: bool
    traffic: dict[str, float] | None
    patched_at: str | None = None
    exposure: dict[str, Any] | None = None
    """The newest `bluegreen exposure` measurement of this side (`advisories.measured`):
    open CVEs by urgency, hosts, measured_at, and `outdated` when the side was patched
    after it; None: never measured."""


@dataclass(frozen=True)
class ServiceView:
    name: str
    live: Side | None
    """The router's word; None when the router could not be read (`router_error`)."""
    router_error: str | None
    state_live: Side | None
    agrees: bool
    sides: list[SideView]
    rollback_to: Side | None
    flip_problem: str | None
    pending_flip: dict[str, Any] | None
    lock: dict[str, Any] | None
    last_flip_at: datetime | None
    rollbacks: int
    automatic_rollbacks: int
    verification_failures: dict[str, int]
    """Per side: verifications recorded as failed (audit chain)."""
    deviations: int = 0
    """Checks that found the hosts deviating from the approved baseline (audit chain)."""
    exposure: dict[str, Any] | None = None
    """side -> its exposure (as `SideView.exposure`) for the measured sides; None: neither
    side was ever measured."""
    step: dict[str, Any] | None = None
    """The current progressive step at the router ({side, percent, preview}: that share of
    new requests, or only preview requests, goes to the standby `side`); None: all traffic
    on the live side (or the router could not be read)."""

    def as_json(self, now: datetime) -> dict[str, Any]:
        return {**_plain(self), "seconds_since_last_flip": seconds_since(self.last_flip_at, now)}


@dataclass(frozen=True)
class HostProgress:
    host: str
    stage: str
    """waiting, patching, patched, verifying, verified, failed."""


@dataclass(frozen=True)
class RunView:
    run_id: str
    kind: str
    service: str | None
    status: str
    actor: str
    started_at: datetime
    finished_at: datetime | None
    result: str | None
    step: str | None
    """The step in progress (begun, not ended), or the last one ended."""
    step_running: bool
    steps_done: list[str]
    hosts: list[HostProgress]
    bake_steps: list[dict[str, Any]] = field(default_factory=list)
    """The bake's exposure steps the run journaled (`canary:N`, as in the campaign report:
    each ended step with every measurement, a begun one as `running`)."""

    def as_json(self) -> dict[str, Any]:
        return _plain(self)


@dataclass(frozen=True)
class CampaignView:
    name: str
    run_id: str
    status: str
    actor: str
    started_at: datetime
    finished_at: datetime | None
    result: str | None
    waves: list[list[dict[str, Any]]]
    """Per wave, each service's progress as `campaign status --json` shows it."""
    window: dict[str, Any] | None
    """open, reason, closes_at, next_open; None when the run has no window."""

    def as_json(self) -> dict[str, Any]:
        return _plain(self)


@dataclass(frozen=True)
class AuditView:
    ok: bool
    count: int
    head_hash: str
    problem: str | None
    recent: list[dict[str, Any]]
    """The newest records first."""

    @property
    def head(self) -> str:
        return f"{self.count}:{self.head_hash}"

    def as_json(self) -> dict[str, Any]:
        return {**asdict(self), "head": self.head}


@dataclass(frozen=True)
class Snapshot:
    read_at: datetime
    services: list[ServiceView]
    runs: list[RunView]
    campaigns: list[CampaignView]
    audit: AuditView
    notes: list[str] = field(default_factory=list)
    workers: list[SiteWorkers] | None = None
    """Per site, its live workers and its share of the queue (`web.workers`); None: the
    store has no workers (SQLite)."""

    def runs_in_flight(self) -> list[RunView]:
        return [r for r in self.runs if r.finished_at is None]


def _plain(view: Any) -> dict[str, Any]:
    """A view as JSON-ready data: its top-level timestamps as ISO 8601 text."""
    return {k: v.isoformat() if isinstance(v, datetime) else v
            for k, v in asdict(view).items()}


def seconds_since(at: datetime | None, now: datetime) -> float | None:
    return None if at is None else round(max(0.0, (now - at).total_seconds()), 3)


def read_snapshot(
    services: list[str], store: StateStore, router: Router, now: datetime,
    measured: Measured | None = None, measured_problem: str | None = None,
    workers: WorkersReader | None = None,
) -> Snapshot:
    """`measured`: the newest exposure per (service, side) (`advisories.measured.load`);
    None, with `measured_problem`, when its record could not be read. `workers`: reads the
    sites' workers (`web.workers.reader`; None: the store has none)."""
    records = store.audit_records()
    chain = store.verify_audit()
    runs = store.list_runs()
    views = [_service(name, store, router, records, measured or {}) for name in services]
    return Snapshot(
        read_at=now,
        services=views,
        runs=[_run(store, r) for r in _recent(runs)],
        campaigns=_campaigns(store, runs, now),
        audit=AuditView(
            ok=chain.ok, count=chain.count, head_hash=chain.head_hash, problem=chain.problem,
            recent=[_record(r) for r in reversed(records[-RECENT_AUDIT:])],
        ),
        notes=_exposure_notes(views, measured_problem),
        workers=None if workers is None else workers(runs, now),
    )


def _exposure_notes(views: list[ServiceView], problem: str | None) -> list[str]:
    if problem is not None:
        return [f"open CVEs: not shown: {problem}"]
    if not any(v.exposure for v in views):
        return ["open CVEs: not measured yet: run `bluegreen exposure` (from a timer, say "
                "hourly); the dashboard and /metrics show its newest measurement per side"]
    return ["open CVEs: the newest `bluegreen exposure` measurement of each side, every "
            "urgency; a side patched after it is marked outdated"]


def _side_exposure(m: SideMeasurement | None, patched_at: str | None) -> dict[str, Any] | None:
    if m is None:
        return None
    outdated = patched_at is not None and datetime.fromisoformat(patched_at) > m.measured_at
    return {**m.as_json(), "outdated": outdated}


def _service(name: str, store: StateStore, router: Router,
             records: list[AuditRecord], measured: Measured) -> ServiceView:
    live: Side | None = None
    router_error: str | None = None
    try:
        live = router.live(name)
    except BluegreenError as exc:
        router_error = exc.message
    svc = store.get_service(name)
    step = read_exposure(router, name)[0] if router_error is None else None
    sides = []
    for side in SIDES:
        view = side_view(store.get_side(name, side))
        counted = None
        if router_error is None:
            try:
                c = router.counters(name, side)
                counted = None if c is None else c.as_dict()
            except BluegreenError:
                counted = None
        sides.append(SideView(
            side=side, live=side == live, state=view["state"], since=view["since"],
            reason=view["reason"], patch_level=view["patch_level"],
            verified_at=view["verified_at"], verification_ok=view["verification_ok"],
            verified_after_patch=view["verified_after_patch"], traffic=counted,
            patched_at=view["patched_at"],
            exposure=_side_exposure(measured.get((name, side)), view["patched_at"])))
    mine = [r for r in records if r.service == name]
    flips = [r for r in mine if r.command in FLIP_COMMANDS and r.result == "ok"
             and r.after.get("live") is not None]
    failed_verifications = Counter(
        str(r.after.get("side")) for r in mine
        if r.command == "verify" and r.after.get("ok") is False)
    lock = store.get_lock(name)
    state_live = svc.live_side if svc else None
    return ServiceView(
        name=name, live=live, router_error=router_error, state_live=state_live,
        agrees=live is None or state_live in (None, live), sides=sides,
        rollback_to=svc.rollback_to if svc else None,
        flip_problem=svc.flip_problem if svc else None,
        pending_flip=svc.pending_flip.as_json() if svc and svc.pending_flip else None,
        lock={"run_id": lock.run_id, "holder": lock.holder,
              "since": lock.acquired_at.isoformat()} if lock else None,
        last_flip_at=flips[-1].at if flips else None,
        rollbacks=sum(1 for r in mine if r.command in ROLLBACK_COMMANDS and r.result == "ok"),
        automatic_rollbacks=sum(1 for r in mine if r.command == AUTOMATIC_ROLLBACK
                                and r.result == "ok"),
        verification_failures={side: failed_verifications.get(side, 0) for side in SIDES},
        deviations=sum(1 for r in mine if r.command == DEVIATION),
        exposure={s.side: s.exposure for s in sides if s.exposure is not None} or None,
        step=step.as_dict() if step is not None else None,
    )


def _recent(runs: list[Run]) -> list[Run]:
    """Every unfinished run, and the newest finished ones (newest first)."""
    unfinished = [r for r in runs if r.finished_at is None]
    finished = [r for r in runs if r.finished_at is not None][-RECENT_RUNS:]
    return list(reversed(finished + unfinished))[: RECENT_RUNS + len(unfinished)]


def _run(store: StateStore, run: Run) -> RunView:
    journal = store.journal(run.run_id) if run.kind == "rollout" else []
    ended = [e.step for e in journal if e.phase == "end"]
    open_steps = [e.step for e in journal if e.phase == "begin" and e.step not in ended]
    step = open_steps[-1] if open_steps else (ended[-1] if ended else None)
    return RunView(
        run_id=run.run_id, kind=run.kind, service=run.service, status=run.status,
        actor=run.actor, started_at=run.started_at, finished_at=run.finished_at,
        result=run.result, step=step, step_running=bool(open_steps), steps_done=ended,
        hosts=_host_progress(journal, run),
        bake_steps=[s.as_dict() for s in canary_steps(journal)],
    )


def _host_progress(journal: list[JournalEntry], run: Run) -> list[HostProgress]:
    """Each standby host's stage, from what the journal has recorded so far."""
    by = {e.step + ":" + e.phase: e for e in journal}
    pre = by.get("precheck:end")
    if pre is None:
        return []
    hosts = [str(h) for h in pre.data.get("standby_hosts", [])]
    patched = set((by["patch:end"].data.get("hosts") or {}) if "patch:end" in by else ())
    failed_hosts = set()
    verified = set()
    if "verify:end" in by:
        results = by["verify:end"].data.get("results", [])
        failed_hosts = {r["host"] for r in results if r.get("status") != "pass"}
        verified = {r["host"] for r in results} - failed_hosts
    stopped = run.finished_at is not None and run.status != "done"

    def stage(host: str) -> str:
        if host in verified:
            return "verified"
        if host in failed_hosts:
            return "failed"
        if "verify:begin" in by and host in patched:
            return "failed" if stopped else "verifying"
        if host in patched or "patch:end" in by:
            return "patched"
        if "patch:begin" in by:
            return "failed" if stopped else "patching"
        return "waiting"

    return [HostProgress(h, stage(h)) for h in hosts]


def _campaigns(store: StateStore, runs: list[Run], now: datetime) -> list[CampaignView]:
    from orchestrator.campaign.ops import campaign_status

    newest: dict[str, Run] = {}
    for run in runs:
        if run.kind == "campaign":
            newest[str(run.params.get("name"))] = run  # list_runs is oldest first
    out = []
    for name, run in sorted(newest.items()):
        status = campaign_status(store, run)
        waves = [[{"service": s, **status.services[s].as_dict()} for s in wave]
                 for wave in status.waves]
        out.append(CampaignView(
            name=name, run_id=run.run_id, status=status.status, actor=run.actor,
            started_at=run.started_at, finished_at=run.finished_at, result=run.result,
            waves=waves, window=_window(run.params.get("campaign", {}).get("window"), now)))
    return out


def _window(raw: dict[str, Any] | None, now: datetime) -> dict[str, Any] | None:
    if not raw:
        return None
    from orchestrator.schedule.window import Window, window_state

    try:
        window = Window.model_validate(raw)
    except ValueError as exc:  # stored by an older version: show, do not fail
        return {"open": None, "reason": f"window not readable: {exc}", "closes_at": None,
                "next_open": None}
    return dict(window_state(window, now).as_dict())


def _record(r: AuditRecord) -> dict[str, Any]:
    return {"seq": r.seq, "at": r.at.isoformat(), "actor": r.actor, "os_user": r.os_user,
            "command": r.command, "service": r.service, "reason": r.reason,
            "result": r.result, "before": r.before.get("live"), "after": r.after.get("live")}
