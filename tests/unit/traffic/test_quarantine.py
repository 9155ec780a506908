"""Quarantine through the kernel, with a fake router and the real SQLite store."""

from __future__ import annotations

from pathlib import Path

import pytest

from orchestrator.errors import (
    BadInput,
    FlipIncomplete,
    LockHeld,
    StateError,
    VerificationFailed,
)
from orchestrator.sides import Side
from orchestrator.state import SQLiteStateStore
from orchestrator.testing import (
    FakeRouter,
    SimulatedCrash,
    at_failpoints,
    crash_at,
    temp_store,
)
from orchestrator.traffic import FlipRequest, move_traffic
from orchestrator.traffic.quarantine import quarantine_side
from tests.support.kernel import SETUP, verified


def state(store: SQLiteStateStore, side: Side) -> str:
    rec = store.get_side("web", side)
    return rec.state if rec else "untouched"


def flip(store: SQLiteStateStore, router: FakeRouter, to: Side, command: str = "flip") -> None:
    move_traffic(store, router, FlipRequest(service="web", command=command, reason="t",
                                            actor="bob", to=to, abort_in_flight=True))


def test_live_side_flips_to_the_verified_standby_then_is_quarantined(
    store: SQLiteStateStore, router: FakeRouter
) -> None:
    verified(store, "green")
    out = quarantine_side(store, router, "web", "blue", "INC-1 new root key", "alice")
    assert out.changed and out.flip is not None and out.flip.to_side == "green"
    assert router.live("web") == "green"
    assert state(store, "blue") == "quarantined"
    assert store.get_side("web", "blue").state_reason == "INC-1 new root key"  # type: ignore[union-attr]
    records = [(r.command, r.actor, r.reason) for r in store.audit_records("web")]
    assert records[-2:] == [("quarantine.begin", "alice", "INC-1 new root key"),
                            ("quarantine", "alice", "INC-1 new root key")]
    # the mark is in the flip's own record: one transaction, never one without the other
    assert store.audit_records("web")[-1].after["blue_state"] == "quarantined"
    # never a flip target again: not by flip, not by rollback, not after a verification
    for command in ("flip", "rollback"):
        with pytest.raises(VerificationFailed, match="quarantined"):
            flip(store, router, "blue", command)
    store.record_verification("web", "blue", True, None, "passed", audit=SETUP, hosts={})
    assert state(store, "blue") == "quarantined"
    with pytest.raises(VerificationFailed, match="quarantined"):
        flip(store, router, "blue")
    # a new patch (rebuild) and a passing verification lift it
    verified(store, "blue", "v3")
    flip(store, router, "blue")
    assert router.live("web") == "blue"


def test_refused_when_the_other_side_may_not_take_traffic(
    store: SQLiteStateStore, router: FakeRouter
) -> None:
    with pytest.raises(VerificationFailed, match="refusing to send traffic to green"):
        quarantine_side(store, router, "web", "blue", "INC-2", "alice")
    assert router.live("web") == "blue" and state(store, "blue") == "untouched"
    # nothing changed (the kernel's first look at the service records its live side)
    assert [r.command for r in store.audit_records("web")] == ["adopt"]


def test_standby_is_marked_without_moving_traffic_and_again_is_a_no_op(
    store: SQLiteStateStore, router: FakeRouter
) -> None:
    out = quarantine_side(store, router, "web", "green", "INC-3", "alice")
    assert out.changed and out.flip is None and router.live("web") == "blue"
    again = quarantine_side(store, router, "web", "green", "INC-3 again", "alice")
    assert not again.changed and "already quarantined (INC-3)" in again.message
    assert [r.command for r in store.audit_records("web")].count("quarantine") == 1
    with pytest.raises(BadInput, match="reason"):
        quarantine_side(store, router, "web", "green", " ", "alice")


# -- one kernel operation (issue 20, 1 and 2) -------------------------------------------------


@pytest.mark.parametrize("point, moved", [("traffic:intent", False), ("traffic:router", True),
                                          ("traffic:recorded", True)])
def test_a_kill_inside_a_live_quarantine_leaves_both_or_nothing(
    tmp_path: Path, point: str, moved: bool
) -> None:
    """kill -9 anywhere in the quarantine of the live side: the next traffic command (here
    an operator's rollback, racing `watch --quarantine`) finds the flip and its mark
    together, or neither; it never sends traffic back to the suspect side."""
    router = FakeRouter({"web": "blue"})
    with temp_store(tmp_path) as store:
        verified(store, "green")
        with crash_at(point), pytest.raises(SimulatedCrash):
            quarantine_side(store, router, "web", "blue", "INC-4 root key", "watch")
    with temp_store(tmp_path) as store:  # the next process
        if moved:
            with pytest.raises(VerificationFailed, match="quarantined"):
                flip(store, router, "blue", "rollback")
            assert router.live("web") == "green" and state(store, "blue") == "quarantined"
            svc = store.get_service("web")
            assert svc is not None and svc.live_side == "green" and svc.pending_flip is None
            recovered = [r for r in store.audit_records("web") if r.command == "quarantine"]
            assert recovered[-1].after["blue_state"] == "quarantined"
        else:
            flip(store, router, "blue", "rollback")  # nothing to roll back: nothing moved
            assert router.live("web") == "blue" and state(store, "blue") == "untouched"
        assert store.verify_audit().ok


def test_a_standby_quarantine_waits_for_the_traffic_lock(
    store: SQLiteStateStore, router: FakeRouter, tmp_path: Path
) -> None:
    """A flip between its gate and its record holds the traffic lock: the mark cannot
    come in between (it waits; here with no time to wait: LockHeld, nothing marked)."""
    verified(store, "green")
    with store.traffic_lock("web", command="rollout.flip"):
        with SQLiteStateStore(tmp_path / "state" / "state.db") as other:
            with pytest.raises(LockHeld, match=r"rollout\.flip"):
                quarantine_side(other, router, "web", "green", "INC-5", "alice",
                                lock_timeout_s=0)
    assert state(store, "green") == "verified"


def test_a_quarantine_aborts_the_runs_in_flight(
    store: SQLiteStateStore, router: FakeRouter
) -> None:
    store.create_run("r1", "rollout", "web", {}, "ci")
    out = quarantine_side(store, router, "web", "green", "INC-6", "alice")
    assert out.changed and "aborted run r1" in out.message
    run = store.get_run("r1")
    assert run is not None and run.status == "aborted" and "quarantine" in str(run.result)


def test_a_standby_quarantine_persists_a_live_flip_a_reload_would_undo(
    store: SQLiteStateStore, router: FakeRouter
) -> None:
    """The live side's flip was not persisted: a reload would send traffic back to the
    side now quarantined. The quarantine marks it, then persists the live side again."""
    verified(store, "green")
    router.fail_next("persist")
    with pytest.raises(FlipIncomplete):
        flip(store, router, "green")
    assert router.persisted["web"] == "blue"
    out = quarantine_side(store, router, "web", "blue", "INC-8", "alice")
    assert out.changed and out.flip is None and state(store, "blue") == "quarantined"
    assert router.persisted["web"] == router.live("web") == "green"
    svc = store.get_service("web")
    assert svc is not None and svc.flip_problem is None


def test_a_target_that_changed_between_gate_and_record_is_not_recorded_and_undone(
    store: SQLiteStateStore, router: FakeRouter, tmp_path: Path
) -> None:
    """Defence in depth: the record of a flip re-checks the target's generation in its own
    transaction; a target written meanwhile (here a failing verification, which takes no
    traffic lock) is not recorded, and the flip is undone at the router."""
    verified(store, "green")

    def verification_fails() -> None:
        with SQLiteStateStore(tmp_path / "state" / "state.db") as other:
            other.record_verification("web", "green", False, "v2", "1 failed", audit=SETUP)

    with at_failpoints(meanwhile=("traffic:router", verification_fails)):
        with pytest.raises(StateError, match="changed during the flip"):
            flip(store, router, "green")
    assert router.live("web") == router.persisted["web"] == "blue"
    svc = store.get_service("web")
    assert svc is not None and svc.live_side == "blue"
    assert state(store, "green") == "verify_failed"
