"""The order of the kernel's checks (issue 20, items 11 and 14): every check (the gate, the
hosts, the router's health, and last the maintenance window) runs before anything is
aborted or journaled, and the window is asked under the traffic lock, right before the
router changes."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import pytest

from orchestrator.errors import LockHeld, OutsideWindow, RouterError, VerificationFailed
from orchestrator.sides import Side
from orchestrator.state import SQLiteStateStore
from orchestrator.testing import FakeRouter, temp_store
from orchestrator.traffic import FlipRequest, move_traffic
from tests.support.kernel import SETUP, verified


def rollout_patching_green(store: SQLiteStateStore) -> None:
    """Run r1 (its process alive: this one) between its precheck and its verify, written
    by its own store (the operator's commands are another process's)."""
    with SQLiteStateStore(store.path) as own:
        own.create_run("r1", "rollout", "web", {}, "ci")
        own.acquire_lock("web", "r1")
        own.journal_begin("r1", "precheck")
        own.journal_end("r1", "precheck", {"live": "blue", "standby": "green"})
        own.begin_patch("web", "green", "v3", audit=SETUP)


def status_of(store: SQLiteStateStore, run_id: str) -> str:
    run = store.get_run(run_id)
    assert run is not None
    return run.status


def flip_to_green(**kw: object) -> FlipRequest:
    return FlipRequest(service="web", command="flip", reason="test", actor="alice",
                       to="green", abort_in_flight=True, **kw)  # type: ignore[arg-type]


def test_a_flip_the_gate_refuses_aborts_no_run_and_hints_no_resume(
    store: SQLiteStateStore, router: FakeRouter
) -> None:
    move_traffic(store, router, FlipRequest(service="web", command="flip", reason="adopt",
                                            actor="alice", to="blue"))
    rollout_patching_green(store)
    records = len(store.audit_records("web"))
    with pytest.raises(VerificationFailed) as caught:
        move_traffic(store, router, flip_to_green())
    err = caught.value
    assert "it is patching" in err.message and "run r1 was not aborted" in err.message
    assert err.hint is not None and "run r1 is not finished" in err.hint
    assert status_of(store, "r1") == "running"  # the rollout goes on
    assert store.get_lock("web") is not None
    assert len(store.audit_records("web")) == records  # nothing journaled, nothing aborted
    assert router.memory["web"] == "blue"


def test_without_a_run_in_flight_the_refusal_does_not_hint_resume(
    store: SQLiteStateStore, router: FakeRouter
) -> None:
    store.begin_patch("web", "green", "v3", audit=SETUP)  # a run that ended mid-patch
    with pytest.raises(VerificationFailed) as caught:
        move_traffic(store, router, flip_to_green())
    assert "resume" not in str(caught.value.hint) and "new rollout" in str(caught.value.hint)


def test_a_flip_to_a_side_with_no_server_up_aborts_no_run(
    store: SQLiteStateStore, router: FakeRouter
) -> None:
    verified(store, "green")
    with SQLiteStateStore(store.path) as own:  # the run's own process
        own.create_run("r1", "rollout", "web", {}, "ci")
        own.acquire_lock("web", "r1")
    router.down.add(("web", "green"))
    with pytest.raises(RouterError, match="run r1 was not aborted"):
        move_traffic(store, router, flip_to_green())
    assert status_of(store, "r1") == "running"


def test_a_flip_that_passes_its_checks_aborts_the_run(
    store: SQLiteStateStore, router: FakeRouter
) -> None:
    verified(store, "green")
    with SQLiteStateStore(store.path) as own:  # the run's own process
        own.create_run("r1", "rollout", "web", {}, "ci")
        own.acquire_lock("web", "r1")
    out = move_traffic(store, router, flip_to_green())
    assert out.changed and out.aborted_run == "r1" and status_of(store, "r1") == "aborted"


def test_a_rollback_still_answers_by_aborting_a_run_before_its_flip(
    store: SQLiteStateStore, router: FakeRouter
) -> None:
    rollout_patching_green(store)
    out = move_traffic(store, router, FlipRequest(service="web", command="rollback",
                                                  reason="INC-1", actor="bob",
                                                  abort_in_flight=True))
    assert not out.changed and out.aborted_run == "r1" and status_of(store, "r1") == "aborted"


def test_the_window_is_asked_last_under_the_traffic_lock(
    tmp_path: Path, store: SQLiteStateStore, router: FakeRouter
) -> None:
    verified(store, "green")
    asked: list[str] = []

    def recheck(side: Side, recorded: Mapping[str, str]) -> None:
        asked.append("hosts")

    def still_allowed() -> str | None:
        asked.append("window")
        with temp_store(tmp_path) as other, pytest.raises(LockHeld):  # another process
            with other.traffic_lock("web", 0.0):
                pass
        assert store.get_service("web").pending_flip is None  # type: ignore[union-attr]
        return None

    out = move_traffic(store, router, FlipRequest(
        service="web", command="rollout.flip", reason="run r1", actor="ci", to="green",
        recheck_hosts=recheck, still_allowed=still_allowed))
    assert out.changed and asked == ["hosts", "window"]


def test_a_window_that_closed_meanwhile_defers_with_nothing_journaled(
    store: SQLiteStateStore, router: FakeRouter
) -> None:
    verified(store, "green")
    store.create_run("r1", "rollout", "web", {}, "ci")
    records = len(store.audit_records("web"))
    with pytest.raises(OutsideWindow, match="outside the maintenance window"):
        move_traffic(store, router, FlipRequest(
            service="web", command="rollout.flip", reason="run r1", actor="ci", to="green",
            run_id="r1", still_allowed=lambda: "outside the maintenance window"))
    assert router.memory["web"] == "blue" and router.flips == []
    svc = store.get_service("web")
    assert svc is not None and svc.live_side == "blue" and svc.pending_flip is None
    new = store.audit_records("web")[records:]
    assert not [r for r in new if r.command.startswith("rollout.flip")], new
    assert status_of(store, "r1") == "running"
