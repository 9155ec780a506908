"""The campaign engine's invariants with fakes (no lab): child rollouts of FakePatcher and
FakeGate (`fake_rollouts`), a FakeRouter, a frozen clock and the real SQLite store."""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from orchestrator.campaign.events import CampaignResult
from orchestrator.campaign.model import campaign_from_dict
from orchestrator.campaign.ops import AbortedCampaign, abort
from orchestrator.campaign.runner import CampaignRunner
from orchestrator.campaign.runs import NothingToContinue, campaign_runs
from orchestrator.errors import LockHeld, OutsideWindow
from orchestrator.sides import Side
from orchestrator.state import SQLiteStateStore
from orchestrator.testing import (
    FakeGate,
    FakePatcher,
    FakeRouter,
    FrozenClock,
    fake_config,
    fake_fleet,
    fake_rollouts,
    temp_store,
)

SERVICES = ("web", "api")
# the frozen clock starts at 2026-11-07 22:00 UTC: this window opens two hours later
LATER = [{"start": "2026-11-08T00:00:00+00:00", "end": "2026-11-08T01:00:00+00:00"}]


def campaign_doc(*, on_failure: str = "stop", window: Any = None) -> dict[str, Any]:
    return {
        "name": "c1",
        "advisories": [{"id": "DEMO-1", "cves": ["CVE-2026-0001"],
                        "packages": {"demo-web": "1.0.1"}}],
        "waves": [{"services": ["web"], "on_failure": on_failure}, {"services": ["api"]}],
        "window": window or {"always": True},
    }


@dataclass
class Engine:
    runner: CampaignRunner
    store: SQLiteStateStore
    router: FakeRouter
    patcher: FakePatcher
    clock: FrozenClock
    file: str

    def run(self, doc: dict[str, Any], *, continue_run: bool = False
            ) -> CampaignResult | NothingToContinue:
        return self.runner.run(campaign_from_dict(doc), self.file, continue_run=continue_run)


@pytest.fixture
def engine(tmp_path: Path) -> Iterator[Engine]:
    config = fake_config(tmp_path, SERVICES)
    router = FakeRouter({s: "blue" for s in SERVICES})
    patcher = FakePatcher(fail=set())
    clock = FrozenClock()
    file = tmp_path / "c1.yml"
    file.write_text("# the campaign, as the runner was given it\n")
    with temp_store(tmp_path, clock=clock) as store:
        runner = CampaignRunner(config, store, router, actor="ci", clock=clock,
                                fleet=fake_fleet(config),
                                rollouts=fake_rollouts(patcher, FakeGate()))
        yield Engine(runner, store, router, patcher, clock, str(file))


def test_a_campaign_patches_its_waves_in_order_and_flips_each_service(engine: Engine) -> None:
    result = engine.run(campaign_doc())
    assert isinstance(result, CampaignResult)
    assert (result.status, result.exit_code) == ("done", 0)
    assert engine.patcher.calls == [("web", "green"), ("api", "green")]
    assert engine.router.flips == [("web", "green"), ("api", "green")]
    assert {name: s.status for name, s in result.services.items()} == {"web": "done",
                                                                       "api": "done"}


@pytest.mark.parametrize(("policy", "message", "patched", "flipped", "api"), [
    ("stop", "stopping (on_failure: stop)", ["web"], [], "skipped"),  # api never touched
    ("continue", "finished with failures", ["web", "api"], ["api"], "done"),
])
def test_a_failed_service_stops_or_continues_the_campaign_as_its_wave_says(
    engine: Engine, policy: str, message: str, patched: list[str], flipped: list[str],
    api: str,
) -> None:
    engine.patcher.fail.add(("web", "green"))
    result = engine.run(campaign_doc(on_failure=policy))
    assert isinstance(result, CampaignResult)
    assert result.status == "failed" and message in result.message and result.exit_code != 0
    assert engine.patcher.calls == [(s, "green") for s in patched]
    assert engine.router.flips == [(s, "green") for s in flipped]  # web stays where it was
    assert result.services["api"].status == api


def test_a_closed_window_defers_everything_then_the_run_continues_when_it_opens(
    engine: Engine,
) -> None:
    doc = campaign_doc(window={"intervals": LATER})
    result = engine.run(doc)
    assert isinstance(result, CampaignResult)
    assert (result.status, result.exit_code) == ("deferred", OutsideWindow.exit_code)
    assert engine.patcher.calls == [] and engine.router.flips == []
    engine.clock.advance(2 * 3600 + 60)  # inside the window: the timer's `--continue`
    again = engine.run(doc, continue_run=True)
    assert isinstance(again, CampaignResult) and again.status == "done"
    assert again.run_id == result.run_id  # the same run, continued
    assert engine.router.flips == [("web", "green"), ("api", "green")]


def test_the_window_closing_during_the_patch_defers_before_the_flip(engine: Engine) -> None:
    def slow_ansible(service: str, side: Side) -> None:
        engine.clock.advance(3600)  # the window (open when the run began) closes meanwhile

    engine.patcher.during = slow_ansible
    engine.clock.advance(2 * 3600 + 60)  # inside LATER
    result = engine.run(campaign_doc(window={"intervals": LATER}))
    assert isinstance(result, CampaignResult) and result.status == "deferred"
    assert engine.patcher.calls == [("web", "green")] and engine.router.flips == []
    green = engine.store.get_side("web", "green")
    assert green is not None and green.state == "verified"  # patched + verified, waiting


def test_continue_after_the_campaign_finished_does_nothing(engine: Engine) -> None:
    first = engine.run(campaign_doc())
    assert isinstance(first, CampaignResult) and first.status == "done"
    calls, flips = list(engine.patcher.calls), list(engine.router.flips)
    again = engine.run(campaign_doc(), continue_run=True)
    assert isinstance(again, NothingToContinue)
    assert again.last_run.run_id == first.run_id and "nothing to continue" in again.message
    assert engine.patcher.calls == calls and engine.router.flips == flips
    assert len(campaign_runs(engine.store, "c1")) == 1  # no new run started


def test_continue_while_a_live_process_drives_the_run_leaves_it_to_that_process(
    engine: Engine,
) -> None:
    import socket
    import subprocess

    from orchestrator.campaign.events import campaign_lock
    from orchestrator.campaign.runs import RunningElsewhere
    from orchestrator.state import LockHolder

    doc = campaign_doc(window={"intervals": LATER})
    deferred = engine.run(doc)  # unfinished: deferred until the window opens
    assert isinstance(deferred, CampaignResult) and deferred.status == "deferred"
    other = subprocess.Popen(["sleep", "60"])  # another scheduler, alive, holding the run
    try:
        engine.store.acquire_lock(campaign_lock("c1"), deferred.run_id, LockHolder(
            holder="ci@other", pid=other.pid, hostname=socket.gethostname()))
        engine.clock.advance(2 * 3600 + 60)
        again = engine.run(doc, continue_run=True)
        assert isinstance(again, RunningElsewhere) and str(other.pid) in again.message
        assert engine.patcher.calls == [] and engine.router.flips == []
    finally:
        other.kill()
        other.wait()


def test_continue_that_loses_the_race_before_the_winner_committed_looks_again(
    engine: Engine, monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Two timers fire together. On PostgreSQL the winner holds the advisory lock a moment
    before its lock row is committed: the loser sees "held" with no row, so no holder to
    name. It looks again (not exit 5) and reports the winner once its row is there."""
    import socket
    import subprocess

    from orchestrator.campaign import runner as runner_module
    from orchestrator.campaign.events import campaign_lock
    from orchestrator.campaign.runs import RunningElsewhere
    from orchestrator.errors import LockHeld
    from orchestrator.state import LockHolder

    monkeypatch.setattr(runner_module, "_SETTLE_DELAY_S", 0.0)
    doc = campaign_doc(window={"intervals": LATER})
    deferred = engine.run(doc)
    assert isinstance(deferred, CampaignResult) and deferred.status == "deferred"
    other = subprocess.Popen(["sleep", "60"])
    real_acquire = engine.store.acquire_lock
    attempts: list[str] = []

    def racing(service: str, run_id: str, holder: LockHolder | None = None) -> object:
        if service == campaign_lock("c1"):
            attempts.append(run_id)
            if len(attempts) == 1:  # the winner's lock is taken, its row not yet visible
                raise LockHeld("the run lock is held by a session (row not committed yet)")
            if len(attempts) == 2:  # by now the winner's row is committed
                real_acquire(service, deferred.run_id, LockHolder(
                    holder="ci@other", pid=other.pid, hostname=socket.gethostname()))
        return real_acquire(service, run_id, holder)

    monkeypatch.setattr(engine.store, "acquire_lock", racing)
    try:
        engine.clock.advance(2 * 3600 + 60)
        again = engine.run(doc, continue_run=True)
        assert isinstance(again, RunningElsewhere) and str(other.pid) in again.message
        assert len(attempts) == 2 and engine.patcher.calls == []
    finally:
        other.kill()
        other.wait()


def test_a_deferral_names_the_next_opening_and_a_resume_names_the_window_it_keeps(
    engine: Engine,
) -> None:
    events: list[tuple[str, str]] = []
    engine.runner.on_event = lambda ev: events.append((ev.kind, ev.message))
    doc = campaign_doc(window={"intervals": LATER})
    deferred = engine.run(doc)
    assert isinstance(deferred, CampaignResult) and deferred.status == "deferred"
    assert "next opening 2026-11-08T00:00:00+00:00" in deferred.message
    assert deferred.message.count("deferred:") == 1
    engine.clock.advance(2 * 3600 + 60)
    resumed = engine.runner.resume(engine.store.get_run(deferred.run_id))  # type: ignore[arg-type]
    assert resumed.status == "done"
    notes = [m for kind, m in events if "resumed with the window the run started with" in m]
    assert notes and "open now (closes 2026-11-08T01:00:00+00:00)" in notes[0], events


def test_campaign_abort_while_a_child_patches_leaves_its_lock_until_it_stops(
    engine: Engine, tmp_path: Path,
) -> None:
    """Issue 20, 6 (review D10): `campaign abort` from another process while the web child's
    Ansible runs. The child is marked aborted but its holder lives: its lock is not freed
    (no second rollout can start Ansible on green meanwhile); the child stops at its next
    boundary (the patch is cancelled, nothing recorded after the abort) and releases the
    lock itself; nothing flips; api is never touched."""
    seen: dict[str, Any] = {}

    def operator_aborts(service: str, side: Side) -> None:
        with SQLiteStateStore(tmp_path / "state" / "state.db") as other:
            seen["aborted"] = abort(other, "c1", "oncall", "window too short")
            seen["lock"] = other.get_lock("web")
            child = other.get_run(seen["lock"].run_id)
            seen["child_status"] = child.status if child else None
            with pytest.raises(LockHeld):  # a second rollout cannot take green over
                other.acquire_lock("web", "rollout-web-2")

    engine.patcher.during = operator_aborts
    result = engine.run(campaign_doc())
    assert isinstance(result, CampaignResult), result
    aborted: AbortedCampaign = seen["aborted"]
    child_id = seen["lock"].run_id
    assert aborted.aborted_children == [child_id] and seen["child_status"] == "aborted"
    # both holders live (this process): neither lock is freed, both are named
    assert [s.split(": run ")[0] for s in aborted.still_stopping] == ["web", "campaign:c1"]
    assert f"web: run {child_id} (pid {os.getpid()} " in aborted.still_stopping[0]
    run = engine.store.get_run(result.run_id)
    assert result.status == "aborted" and run is not None and run.status == "aborted"
    assert engine.patcher.calls == [("web", "green")] and engine.router.flips == []
    green = engine.store.get_side("web", "green")
    assert green is not None and green.state == "patching"  # no late record of the patch
    assert engine.store.get_lock("web") is None  # released by the child as it stopped
    assert engine.store.get_lock("campaign:c1") is None
    commands = [r.command for r in engine.store.audit_records()]
    assert "lock.force_release" not in commands and "rollout.patch" not in commands
    assert engine.store.verify_audit().ok
