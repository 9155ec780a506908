"""The safety kernel (`move_traffic`) with a fake router and the real SQLite store."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

import pytest

from orchestrator.errors import (
    Aborted,
    FlipIncomplete,
    RouterError,
    StateError,
    StateMismatch,
    VerificationFailed,
)
from orchestrator.sides import Side
from orchestrator.state import LockHolder, SQLiteStateStore
from orchestrator.testing import FakeRouter, SimulatedCrash, crash_at, patched, temp_store
from orchestrator.traffic import FlipRequest, move_traffic, settle
from tests.support.kernel import SETUP, verified


@pytest.fixture
def router() -> FakeRouter:
    return FakeRouter({"web": "blue", "api": "blue"})


def req(command: str = "flip", to: Side | None = "green", **kw: object) -> FlipRequest:
    abort = command in ("rollback", "flip")
    return FlipRequest(service="web", command=command, reason="test", actor="alice", to=to,
                       abort_in_flight=abort, **kw)  # type: ignore[arg-type]


def rollback(store: SQLiteStateStore, router: FakeRouter, to: Side | None = None) -> object:
    return move_traffic(store, router, req("rollback", to))


def state(store: SQLiteStateStore, side: Side) -> str:
    rec = store.get_side("web", side)
    return rec.state if rec else "untouched"


def commands(store: SQLiteStateStore) -> list[tuple[str, str]]:
    return [(r.command, r.result) for r in store.audit_records("web")]


# -- the gate and rollback semantics ---------------------------------------------------------


def test_flip_to_a_verified_side_then_rollback_is_idempotent(
    store: SQLiteStateStore, router: FakeRouter
) -> None:
    verified(store, "green")
    out = move_traffic(store, router, req())
    assert out.changed and (out.from_side, out.to_side) == ("blue", "green")
    assert router.memory["web"] == router.persisted["web"] == "green"
    svc = store.get_service("web")
    assert svc is not None and (svc.live_side, svc.rollback_to) == ("green", "blue")
    back = move_traffic(store, router, req("rollback", None))
    assert back.changed and back.to_side == "blue" and "rolled back" in back.message
    assert state(store, "green") == "failed_live"  # it failed under traffic
    again = move_traffic(store, router, req("rollback", None))  # a second operator
    assert not again.changed and "already live" in again.message
    assert router.flips == [("web", "green"), ("web", "blue")]
    # the side that just failed is no flip target any more
    with pytest.raises(VerificationFailed, match="failed_live"):
        move_traffic(store, router, req())
    assert [c for c, _ in commands(store) if not c.startswith(("setup", "adopt"))] == [
        "flip.begin", "flip", "rollback.begin", "rollback"]
    assert store.verify_audit().ok


def test_rollback_of_a_service_never_flipped_changes_nothing(
    store: SQLiteStateStore, router: FakeRouter
) -> None:
    out = move_traffic(store, router, req("rollback", None))
    assert not out.changed and "no earlier flip" in out.message
    assert router.flips == []


@pytest.mark.parametrize("setup, word", [
    ("patching", "patching"), ("patched", "patched"), ("verify_failed", "verification failed"),
    ("untouched", "never verified"), ("quarantined", "quarantined"),
])
def test_gate_refuses_sides_that_may_not_take_traffic(
    store: SQLiteStateStore, router: FakeRouter, setup: str, word: str
) -> None:
    settle(store, router, "web", "test")
    if setup == "patching":
        store.begin_patch("web", "green", "v2", audit=SETUP)
    elif setup == "patched":
        patched(store, "web", "green", "v2", audit=SETUP)
    elif setup == "verify_failed":
        patched(store, "web", "green", "v2", audit=SETUP)
        store.record_verification("web", "green", False, "v2", "1 failed", audit=SETUP)
    elif setup == "quarantined":
        store.quarantine("web", "green", "INC-9 forensics", audit=SETUP)
    with pytest.raises(VerificationFailed) as caught:
        move_traffic(store, router, req())
    assert word in caught.value.message and caught.value.hint
    assert "--force --reason" in caught.value.hint
    assert router.flips == [] and store.get_service("web").pending_flip is None  # type: ignore[union-attr]


def test_force_overrides_the_gate_and_is_audited(
    store: SQLiteStateStore, router: FakeRouter
) -> None:
    settle(store, router, "web", "test")
    store.begin_patch("web", "green", "v2", audit=SETUP)
    out = move_traffic(store, router, req(force=True))
    assert out.changed and out.forced
    record = store.audit_records("web")[-1]
    assert (record.command, record.result, record.after["forced"]) == ("flip", "forced", True)


def test_host_recheck_is_asked_with_the_recorded_fingerprints(
    store: SQLiteStateStore, router: FakeRouter
) -> None:
    verified(store, "green", hosts={"g1": "m=1,b=1,d=1"})
    seen: list[tuple[Side, dict[str, str]]] = []

    def recheck(side: Side, hosts: Mapping[str, str]) -> None:
        seen.append((side, dict(hosts)))
        raise VerificationFailed("g1 changed: boot id")

    with pytest.raises(VerificationFailed, match="boot id"):
        move_traffic(store, router, req(recheck_hosts=recheck))
    assert seen == [("green", {"g1": "m=1,b=1,d=1"})] and router.flips == []


def test_no_flip_to_a_side_without_a_server_up(store: SQLiteStateStore,
                                               router: FakeRouter) -> None:
    verified(store, "green")
    router.down.add(("web", "green"))
    with pytest.raises(RouterError, match="no server of green is UP"):
        move_traffic(store, router, req())
    assert router.flips == [] and "flip.begin" not in dict(commands(store))


# -- runs in flight --------------------------------------------------------------------------


def running_rollout(store: SQLiteStateStore, *, flipped: bool) -> str:
    """A rollout in flight, written by its own process (its own store: the operator's
    commands below are another process's)."""
    with SQLiteStateStore(store.path) as own:
        own.create_run("r1", "rollout", "web", {}, "ci")
        own.acquire_lock("web", "r1")  # held by this (live) process
        own.journal_begin("r1", "precheck")
        own.journal_end("r1", "precheck", {"live": "green" if flipped else "blue",
                                           "standby": "blue" if flipped else "green"})
    return "r1"


def test_rollback_while_a_rollout_patches_aborts_it_and_traffic_stays(
    store: SQLiteStateStore, router: FakeRouter
) -> None:
    verified(store, "green")  # green verified by an earlier run...
    move_traffic(store, router, req())
    verified(store, "blue")
    move_traffic(store, router, req(to="blue"))  # ... and blue after it: rollback_to = green
    running_rollout(store, flipped=False)
    store.begin_patch("web", "green", "v3", audit=SETUP)  # the new run patches green
    out = move_traffic(store, router, req("rollback", None))
    assert not out.changed and out.aborted_run == "r1" and "stays on blue" in out.message
    run = store.get_run("r1")
    assert run is not None and run.status == "aborted"
    assert store.get_lock("web") is not None  # its (live) holder releases it itself
    assert router.memory["web"] == "blue"
    # the run's own flip, later, is refused under the lock
    with pytest.raises(Aborted):
        move_traffic(store, router, FlipRequest(service="web", command="rollout.flip",
                                                reason="run r1", actor="ci", to="green",
                                                run_id="r1"))
    assert router.memory["web"] == "blue"


def test_rollback_to_the_live_side_also_aborts_the_run(
    store: SQLiteStateStore, router: FakeRouter
) -> None:
    running_rollout(store, flipped=False)
    out = move_traffic(store, router, req("rollback", "blue"))
    assert not out.changed and out.aborted_run == "r1"
    assert store.get_run("r1").status == "aborted"  # type: ignore[union-attr]


def test_rollback_after_the_runs_flip_goes_back(store: SQLiteStateStore,
                                                router: FakeRouter) -> None:
    verified(store, "green")
    settle(store, router, "web", "ci")
    store.create_run("r1", "rollout", "web", {}, "ci")
    store.journal_begin("r1", "precheck")
    store.journal_end("r1", "precheck", {"live": "blue", "standby": "green"})
    store.journal_begin("r1", "flip")  # as the rollout's flip step: a kill before its end
    move_traffic(store, router, FlipRequest(service="web", command="rollout.flip",
                                            reason="run r1", actor="ci", to="green",
                                            run_id="r1"))
    out = move_traffic(store, router, req("rollback", None))
    assert out.changed and out.to_side == "blue" and out.aborted_run == "r1"
    assert state(store, "green") == "failed_live"


def test_an_old_runs_flip_is_read_from_its_own_journal_not_from_todays_live_side(
    store: SQLiteStateStore, router: FakeRouter
) -> None:
    """Issue 20, 7: a run killed after its flip (never resumed) saw blue live at its
    precheck; a later run flipped back to blue. A rollback must still go back (to green),
    not answer "r1 had not flipped yet"."""
    verified(store, "green")
    settle(store, router, "web", "ci")
    for run_id, live, target in (("r1", "blue", "green"), ("r2", "green", "blue")):
        store.create_run(run_id, "rollout", "web", {}, "ci")
        store.journal_begin(run_id, "precheck")
        store.journal_end(run_id, "precheck", {"live": live, "standby": target})
        store.journal_begin(run_id, "flip")
        if run_id == "r2":
            verified(store, "blue")
        move_traffic(store, router, FlipRequest(service="web", command="rollout.flip",
                                                reason=f"run {run_id}", actor="ci", to=target,
                                                run_id=run_id))
        if run_id == "r1":
            store.journal_end(run_id, "flip", {"to": target})  # r2: killed before its end
    out = move_traffic(store, router, req("rollback", None))
    assert out.changed and out.to_side == "green", out.message
    assert router.memory["web"] == "green"


def test_the_lock_of_a_dead_aborted_run_is_released(store: SQLiteStateStore,
                                                    router: FakeRouter) -> None:
    import subprocess
    import sys

    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    store.create_run("r1", "rollout", "web", {}, "ci")
    store.acquire_lock("web", "r1", LockHolder(holder="ci@here", pid=child.pid,
                                               hostname=os.uname().nodename))
    move_traffic(store, router, req("rollback", None))
    assert store.get_lock("web") is None


# -- faults of the router --------------------------------------------------------------------


def test_persist_failure_after_set_is_recorded_and_repaired_later(
    store: SQLiteStateStore, router: FakeRouter
) -> None:
    verified(store, "green")
    router.fail_next("persist")
    with pytest.raises(FlipIncomplete) as caught:
        move_traffic(store, router, req())
    err = caught.value
    assert not err.persisted and "traffic is on green" in err.message
    assert err.hint is not None and "flip web --to green" in err.hint
    svc = store.get_service("web")
    assert svc is not None and svc.live_side == "green" and svc.pending_flip is None
    assert svc.flip_problem is not None and svc.flip_problem.startswith("not persisted")
    assert ("flip", "incomplete") in commands(store)
    router.reload()  # what a reload would do now
    assert router.memory["web"] == "blue"
    router.memory["web"] = "green"  # (put it back for the repair below)
    out = move_traffic(store, router, req())
    assert out.repaired and not out.changed
    assert router.persisted["web"] == "green"
    assert store.get_service("web").flip_problem is None  # type: ignore[union-attr]
    assert ("flip.repair", "ok") in commands(store)


def test_confirm_failure_is_recorded(store: SQLiteStateStore, router: FakeRouter) -> None:
    verified(store, "green")
    router.fail_next("confirm")
    with pytest.raises(FlipIncomplete) as caught:
        move_traffic(store, router, req())
    assert caught.value.persisted and not caught.value.confirmed
    svc = store.get_service("web")
    assert svc is not None and svc.live_side == "green"
    assert str(svc.flip_problem).startswith("not confirmed")


def test_refused_flip_is_cancelled_and_audited(store: SQLiteStateStore,
                                               router: FakeRouter) -> None:
    verified(store, "green")
    router.fail_next("refuse")
    with pytest.raises(RouterError, match="refused"):
        move_traffic(store, router, req())
    svc = store.get_service("web")
    assert svc is not None and svc.live_side == "blue" and svc.pending_flip is None
    assert commands(store)[-2:] == [("flip.begin", "started"), ("flip.failed", "failed")]


@pytest.mark.parametrize("fault, lands_on", [("gone_before", "blue"), ("gone_after", "green")])
def test_socket_gone_leaves_the_intent_for_the_next_command(
    store: SQLiteStateStore, router: FakeRouter, fault: str, lands_on: Side
) -> None:
    verified(store, "green")
    router.fail_next(fault)  # type: ignore[arg-type]
    with pytest.raises(RouterError, match="intent is journaled"):
        move_traffic(store, router, req())
    svc = store.get_service("web")
    assert svc is not None and svc.pending_flip is not None and svc.live_side == "blue"
    router.heal()
    assert settle(store, router, "web", "bob") == lands_on
    svc = store.get_service("web")
    assert svc is not None and svc.pending_flip is None and svc.live_side == lands_on
    last = commands(store)[-1]
    assert last == (("flip", "recovered") if lands_on == "green" else ("flip.failed", "cancelled"))


def test_a_store_that_cannot_record_undoes_the_flip(
    store: SQLiteStateStore, router: FakeRouter, monkeypatch: pytest.MonkeyPatch
) -> None:
    verified(store, "green")

    def broken(*_a: object, **_k: object) -> None:
        raise StateError("state database: disk full")

    monkeypatch.setattr(store, "record_flip", broken)
    with pytest.raises(StateError, match="traffic is back on blue"):
        move_traffic(store, router, req())
    assert router.memory["web"] == "blue"
    monkeypatch.undo()
    assert settle(store, router, "web", "bob") == "blue"  # the intent is cancelled
    assert store.get_service("web").pending_flip is None  # type: ignore[union-attr]


# -- crashes and disagreement ----------------------------------------------------------------


@pytest.mark.parametrize("point, lands_on, last", [
    ("traffic:intent", "blue", ("flip.failed", "cancelled")),
    ("traffic:router", "green", ("flip", "recovered")),
    ("traffic:recorded", "green", ("flip", "ok")),
])
def test_a_crash_at_each_failpoint_is_resolved_by_the_next_command(
    tmp_path: Path, router: FakeRouter, point: str, lands_on: Side, last: tuple[str, str]
) -> None:
    with temp_store(tmp_path) as store:
        verified(store, "green")
        with crash_at(point) as passed, pytest.raises(SimulatedCrash):
            move_traffic(store, router, req())
        assert passed[-1] == point
    with temp_store(tmp_path) as store:  # a new process
        assert settle(store, router, "web", "bob") == lands_on
        assert commands(store)[-1] == last
        flips = [c for c in commands(store) if c[0] == "flip"]
        assert len(flips) == (0 if lands_on == "blue" else 1)
        assert store.verify_audit().ok


def test_a_disagreeing_store_stops_every_flip(store: SQLiteStateStore,
                                              router: FakeRouter) -> None:
    verified(store, "green")
    move_traffic(store, router, req())
    router.memory["web"] = "blue"  # someone flipped behind bluegreen's back
    for request in (req(), req("rollback", None), req(to="blue")):
        with pytest.raises(StateMismatch, match="router says blue"):
            move_traffic(store, router, request)
