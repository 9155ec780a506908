"""Progressive exposure through the safety kernel (`expose_traffic`), with the fake router
and the real SQLite store: steps, preview, the gate, rollback from a step, the flip that
ends an exposure, router failures and crashes at every kernel failpoint."""

from __future__ import annotations

from pathlib import Path

import pytest

from orchestrator.errors import BadInput, RouterError, StateError, VerificationFailed
from orchestrator.routers.base import Exposure
from orchestrator.sides import Side
from orchestrator.state import SQLiteStateStore
from orchestrator.testing import FakeRouter, SimulatedCrash, crash_at, patched, temp_store
from orchestrator.traffic import (
    ExposeRequest,
    FlipRequest,
    expose_traffic,
    move_traffic,
)
from tests.support.kernel import SETUP, verified


def step(side: Side | None, percent: int, **kw: object) -> ExposeRequest:
    return ExposeRequest(service="web", side=side, percent=percent, command="rollout.step",
                         reason="bake", actor="alice", **kw)  # type: ignore[arg-type]


def flip(command: str, to: Side | None) -> FlipRequest:
    return FlipRequest(service="web", command=command, reason="test", actor="alice", to=to,
                       abort_in_flight=command in ("rollback", "flip"))


def exposure(store: SQLiteStateStore) -> tuple[Side | None, int]:
    svc = store.get_service("web")
    assert svc is not None
    return svc.exposed_side, svc.exposure_percent


def state(store: SQLiteStateStore, side: Side) -> str:
    rec = store.get_side("web", side)
    return rec.state if rec else "untouched"


def test_steps_preview_and_promotion(store: SQLiteStateStore, router: FakeRouter) -> None:
    verified(store, "green")
    preview = expose_traffic(store, router, step("green", 0))
    assert preview.changed and preview.preview and "preview" in preview.message
    assert router.exposed["web"] == router.exposed_persisted["web"] == Exposure("green", 0)
    for percent in (5, 25, 50):
        out = expose_traffic(store, router, step("green", percent))
        assert out.changed and out.percent == percent and out.live_side == "blue"
        assert exposure(store) == ("green", percent)
        assert router.exposed_persisted["web"] == Exposure("green", percent)
    again = expose_traffic(store, router, step("green", 50))
    assert not again.changed and "nothing changed" in again.message
    steps = [r for r in store.audit_records("web") if r.command == "rollout.step"]
    assert [r.after["percent"] for r in steps] == [0, 5, 25, 50]
    assert all(r.result == "ok" and r.after["exposed_side"] == "green" for r in steps)
    # 100 %: the flip, which ends the exposure in the same kernel operation
    out = move_traffic(store, router, flip("rollout.flip", "green"))
    assert out.changed and router.memory["web"] == "green" and "web" not in router.exposed
    assert "web" not in router.exposed_persisted
    svc = store.get_service("web")
    assert svc is not None and (svc.live_side, svc.exposed_side, svc.exposure_percent) == (
        "green", None, 0)
    assert store.verify_audit().ok


@pytest.mark.parametrize("command", ["rollback", "rollout.auto-rollback"])
def test_rollback_from_a_step_is_instant_and_idempotent(
    store: SQLiteStateStore, router: FakeRouter, command: str
) -> None:
    verified(store, "green")
    expose_traffic(store, router, step("green", 25))
    out = move_traffic(store, router, flip(command, None))
    assert out.changed and out.to_side == "blue" and "rolled back the exposure" in out.message
    assert router.memory["web"] == "blue" and "web" not in router.exposed
    assert "web" not in router.exposed_persisted
    assert exposure(store) == (None, 0)
    assert state(store, "green") == "failed_live"  # it served users
    assert router.flips == []  # the live side never moved
    if command == "rollback":
        again = move_traffic(store, router, flip("rollback", None))
        assert not again.changed and "already rolled back" in again.message
        assert router.memory["web"] == "blue" and router.flips == []
    record = [r for r in store.audit_records("web") if r.command == command][-1]
    assert record.result == "ok" and record.after["rolled_back"] == "green"
    assert record.before["percent"] == 25
    # the side that failed under a share of the traffic is no target any more
    with pytest.raises(VerificationFailed, match="failed_live"):
        expose_traffic(store, router, step("green", 5))
    assert store.verify_audit().ok


def test_the_gate_refuses_what_a_flip_refuses(store: SQLiteStateStore,
                                              router: FakeRouter) -> None:
    patched(store, "web", "green", "v2", audit=SETUP)  # patched, never verified
    with pytest.raises(VerificationFailed, match="not verified"):
        expose_traffic(store, router, step("green", 5))
    store.record_verification("web", "green", True, "v2", "ok", audit=SETUP)
    router.down.add(("web", "green"))
    with pytest.raises(RouterError, match="no server of green is UP"):
        expose_traffic(store, router, step("green", 5))
    router.down.clear()
    with pytest.raises(BadInput, match="is live"):
        expose_traffic(store, router, step("blue", 5))
    for bad in (100, -1):
        with pytest.raises(BadInput, match="0..99"):
            expose_traffic(store, router, step("green", bad))
    from orchestrator.errors import OutsideWindow
    with pytest.raises(OutsideWindow):
        expose_traffic(store, router, step("green", 5, still_allowed=lambda: "window closed"))
    assert router.exposures == [] and exposure(store) == (None, 0)
    assert not any(r.command.startswith("rollout.step") for r in store.audit_records("web"))


def test_a_patch_of_the_exposed_side_is_refused(store: SQLiteStateStore,
                                                router: FakeRouter) -> None:
    verified(store, "green")
    expose_traffic(store, router, step("green", 0))
    with pytest.raises(StateError, match="takes a share of the traffic"):
        store.begin_patch("web", "green", "v3", audit=SETUP)


def test_flip_quarantine_and_clearing_end_the_exposure(store: SQLiteStateStore,
                                                       router: FakeRouter) -> None:
    verified(store, "green")
    expose_traffic(store, router, step("green", 25))
    out = expose_traffic(store, router, step(None, 0))
    assert out.changed and out.side is None and "web" not in router.exposed
    assert state(store, "green") == "verified"  # taking it back is not a rollback
    expose_traffic(store, router, step("green", 25))
    from orchestrator.traffic.quarantine import quarantine_side
    quarantine_side(store, router, "web", "green", "INC-9", "bob")
    assert "web" not in router.exposed and exposure(store) == (None, 0)
    assert state(store, "green") == "quarantined" and router.memory["web"] == "blue"
    assert store.verify_audit().ok


def test_a_refused_change_cancels_and_a_persist_failure_takes_it_back(
    store: SQLiteStateStore, router: FakeRouter
) -> None:
    verified(store, "green")
    router.fail_next_expose("refuse")
    with pytest.raises(RouterError, match="refused"):
        expose_traffic(store, router, step("green", 5))
    svc = store.get_service("web")
    assert svc is not None and svc.pending_flip is None and exposure(store) == (None, 0)
    router.fail_next_expose("persist")
    with pytest.raises(RouterError, match="taken back"):
        expose_traffic(store, router, step("green", 5))
    assert "web" not in router.exposed and exposure(store) == (None, 0)
    assert [r.result for r in store.audit_records("web")
            if r.command == "rollout.step.failed"] == ["failed", "failed"]
    assert store.verify_audit().ok


def test_a_reload_before_persisting_is_reconciled(store: SQLiteStateStore,
                                                  router: FakeRouter) -> None:
    verified(store, "green")
    expose_traffic(store, router, step("green", 25))
    router.exposed_persisted.pop("web")  # the files lost it (restored from a backup)
    router.reload()
    out = move_traffic(store, router, flip("flip", "blue"))  # any traffic command
    assert not out.changed and exposure(store) == (None, 0)
    rec = [r for r in store.audit_records("web") if r.command == "flip.reconcile"]
    assert rec and "holds no exposure" in str(rec[-1].after["how"])
    # an exposure nobody recorded is taken back at the router
    router.exposed["web"] = router.exposed_persisted["web"] = Exposure("green", 40)
    move_traffic(store, router, flip("flip", "blue"))
    assert "web" not in router.exposed and exposure(store) == (None, 0)


@pytest.mark.parametrize("point", ["traffic:locked", "traffic:intent", "traffic:router",
                                   "traffic:recorded"])
def test_kill_at_every_failpoint_is_resolved_by_the_next_command(
    tmp_path: Path, router: FakeRouter, point: str
) -> None:
    with temp_store(tmp_path) as store:
        verified(store, "green")
        expose_traffic(store, router, step("green", 5))
        with crash_at(point), pytest.raises(SimulatedCrash):
            expose_traffic(store, router, step("green", 25))
    with temp_store(tmp_path) as store:  # the next process
        out = move_traffic(store, router, flip("rollback", None))
        assert out.changed and "web" not in router.exposed and exposure(store) == (None, 0)
        assert state(store, "green") == "failed_live"
        svc = store.get_service("web")
        assert svc is not None and svc.pending_flip is None
        recovered = [r for r in store.audit_records("web") if r.result == "recovered"]
        assert bool(recovered) == (point == "traffic:router")
        assert store.verify_audit().ok


def test_a_run_bound_step_is_refused_once_the_run_is_aborted(
    store: SQLiteStateStore, router: FakeRouter
) -> None:
    from orchestrator.errors import Aborted

    verified(store, "green")
    store.create_run("r1", "rollout", "web", {}, "alice")
    expose_traffic(store, router, step("green", 5, run_id="r1"))
    store.finish_run("r1", "aborted", "rolled back")
    with pytest.raises(Aborted):
        expose_traffic(store, router, step("green", 25, run_id="r1"))
    assert router.exposed["web"] == Exposure("green", 5)


def test_a_router_without_exposure_refuses_cleanly(store: SQLiteStateStore) -> None:
    class Plain(FakeRouter):
        expose = None  # type: ignore[assignment]

    verified(store, "green")
    with pytest.raises(RouterError, match="cannot expose"):
        expose_traffic(store, Plain({"web": "blue"}), step("green", 5))
    move_traffic(store, Plain({"web": "blue"}), flip("flip", "green"))  # flips still work


def test_a_rollback_whose_clear_is_not_persisted_is_recorded_and_repaired(
    store: SQLiteStateStore, router: FakeRouter
) -> None:
    """Taken back in memory, the maps on disk still hold the step: the service's flip
    problem says so (no patch until it is persisted), a reload that brings the step back
    is taken back by the next traffic command, which clears the problem."""
    verified(store, "green")
    expose_traffic(store, router, step("green", 25))
    router.fail_next_expose("persist")
    out = move_traffic(store, router, flip("rollback", None))
    assert out.changed and "a reload of the load balancer may bring it back" in out.message
    assert "web" not in router.exposed and router.exposed_persisted["web"] == Exposure("green", 25)
    svc = store.get_service("web")
    assert svc is not None and (svc.flip_problem or "").startswith("exposure not persisted")
    with pytest.raises(StateError, match="exposure not persisted"):
        store.begin_patch("web", "green", "v3", audit=SETUP)
    router.reload()  # the step is back in memory, unrecorded
    assert router.exposed["web"] == Exposure("green", 25)
    again = move_traffic(store, router, flip("flip", "blue"))  # any traffic command
    assert not again.changed and "web" not in router.exposed
    assert "web" not in router.exposed_persisted
    svc = store.get_service("web")
    assert svc is not None and svc.flip_problem is None and exposure(store) == (None, 0)
    assert state(store, "green") == "failed_live"
    store.begin_patch("web", "green", "v3", audit=SETUP)  # allowed again
    assert store.verify_audit().ok


def test_an_unpersisted_clear_without_a_reload_is_persisted_again(
    store: SQLiteStateStore, router: FakeRouter
) -> None:
    verified(store, "green")
    expose_traffic(store, router, step("green", 5))
    router.fail_next_expose("persist")
    expose_traffic(store, router, step(None, 0))
    svc = store.get_service("web")
    assert svc is not None and (svc.flip_problem or "").startswith("exposure not persisted")
    move_traffic(store, router, flip("flip", "blue"))
    svc = store.get_service("web")
    assert svc is not None and svc.flip_problem is None
    assert "web" not in router.exposed_persisted
    assert [r.result for r in store.audit_records("web") if r.command == "flip.repair"] == ["ok"]
