"""Which run a command acts on: a campaign's newest run (by name or id), the newest run of
every campaign, the rollout `bluegreen resume` continues (never a campaign's own), and the
run `campaign run --continue` continues (or nothing, once the last one ended)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from orchestrator.errors import BadInput
from orchestrator.state.base import StateStore
from orchestrator.state.models import RESUMABLE_STATUSES, LockInfo, Run


def campaign_runs(store: StateStore, name: str | None = None) -> list[Run]:
    return [
        r
        for r in store.list_runs()
        if r.kind == "campaign" and (name is None or r.params.get("name") == name)
    ]


def find_run(store: StateStore, name_or_id: str, *, unfinished: bool = False) -> Run:
    """The newest campaign run named `name_or_id` (or with that run id)."""
    run = store.get_run(name_or_id)
    if run is not None and run.kind == "campaign":
        return run
    runs = campaign_runs(store, name_or_id)
    if unfinished:
        runs = [r for r in runs if r.status in RESUMABLE_STATUSES]
    if not runs:
        what = "unfinished campaign run" if unfinished else "campaign run"
        raise BadInput(
            f"no {what} named {name_or_id!r}",
            hint="see `bluegreen campaign status`",
        )
    return runs[-1]


def latest_runs(store: StateStore) -> list[Run]:
    """The newest run of each campaign, in the order the campaigns first ran."""
    latest: dict[str, Run] = {}
    for run in campaign_runs(store):
        latest[str(run.params.get("name"))] = run
    return list(latest.values())


def rollout_to_resume(store: StateStore, run_id: str | None) -> Run | None:
    """The rollout `bluegreen resume [RUN_ID]` continues: that run, or the newest rollout
    still running that no campaign owns (None: nothing to resume). BadInput for an unknown
    run, one that ended, or a campaign's own rollout: the maintenance window and the
    approval belong to the campaign, so it resumes only with `campaign resume`."""
    if run_id:
        run = store.get_run(run_id)
        if run is None:
            raise BadInput(f"no run {run_id!r}", hint="see `bluegreen history`")
    else:
        pending = [r for r in store.list_runs(status="running")
                   if r.kind == "rollout" and "campaign_run" not in r.params]
        if not pending:
            return None
        run = pending[-1]
    if run.status == "abandoned":
        raise BadInput(
            f"run {run.run_id} was abandoned: {run.result or 'another run took its lock over'}"
            "; it cannot be resumed (the newer run owns the service)",
            hint=f"see `bluegreen status {run.service or ''}`; start a new rollout if needed",
        )
    if run.status not in RESUMABLE_STATUSES:
        raise BadInput(f"run {run.run_id} already ended ({run.status})", hint="start a new rollout")
    if "campaign_run" in run.params:
        name = run.params.get("campaign") or run.params["campaign_run"]
        raise BadInput(
            f"run {run.run_id} is part of campaign {name}: it resumes only with its campaign, "
            "so that the maintenance window and the approval apply",
            hint=f"bluegreen campaign resume {name}",
        )
    return run


@dataclass(frozen=True)
class NothingToContinue:
    """`campaign run --continue` after the campaign's last run ended (done, failed, rolled
    back, aborted): a timer continues a run, it never starts one again. Exit 0."""

    campaign: str
    last_run: Run
    file: str

    @property
    def message(self) -> str:
        last = self.last_run
        when = last.finished_at.isoformat() if last.finished_at else "?"
        return (f"campaign {self.campaign}: nothing to continue: the last run {last.run_id}"
                f" ended {last.status} at {when}; a new run needs `bluegreen campaign "
                f"run {self.file}` without --continue")

    def as_dict(self) -> dict[str, Any]:
        return {"campaign": self.campaign, "status": "nothing_to_continue",
                "last_run": self.last_run.run_id, "last_status": self.last_run.status,
                "message": self.message, "exit_code": 0}


def run_to_continue(store: StateStore, name: str, file: str) -> Run | NothingToContinue | None:
    """What `campaign run FILE --continue` does: resume the newest unfinished run of
    campaign `name`; NothingToContinue once its last run ended; None when it never ran
    (start it)."""
    runs = campaign_runs(store, name)
    unfinished = [r for r in runs if r.status in RESUMABLE_STATUSES]
    if unfinished:
        return unfinished[-1]
    if runs:
        return NothingToContinue(name, runs[-1], file)
    return None


@dataclass(frozen=True)
class RunningElsewhere:
    """`campaign run --continue` while another live process (another scheduler, on this
    machine or, with a shared PostgreSQL store, on another) holds the campaign's lock: it
    runs the window, this one has nothing to do. Exit 0."""

    campaign: str
    lock: LockInfo

    @property
    def message(self) -> str:
        lock = self.lock
        return (f"campaign {self.campaign}: run {lock.run_id} is already running it, held by "
                f"{lock.holder} (pid {lock.pid} on {lock.hostname}) since "
                f"{lock.acquired_at:%Y-%m-%d %H:%M:%S} UTC; nothing to do here")

    def as_dict(self) -> dict[str, Any]:
        lock = self.lock
        return {"campaign": self.campaign, "status": "running_elsewhere",
                "run_id": lock.run_id, "holder": lock.holder, "pid": lock.pid,
                "hostname": lock.hostname, "since": lock.acquired_at.isoformat(),
                "message": self.message, "exit_code": 0}


def running_elsewhere(store: StateStore, name: str) -> RunningElsewhere | None:
    """The live holder of campaign `name`'s lock (None: free, or its holder is gone, so a
    resume takes it over)."""
    lock = store.get_lock(f"campaign:{name}")  # events.campaign_lock
    if lock is None or lock.holder_is_gone():
        return None
    return RunningElsewhere(name, lock)
