"""Bugs the model-based test (test_kernel_model.py) found in the safety kernel, pinned as
plain examples: each failed before its fix."""

from __future__ import annotations

from pathlib import Path

import pytest

from orchestrator.errors import FlipIncomplete, StateError, VerificationFailed
from orchestrator.sides import Side
from orchestrator.state import AuditEntryInput, SQLiteStateStore
from orchestrator.testing import FakeRouter, SimulatedCrash, crash_at, patched, temp_store
from orchestrator.traffic import FlipRequest, move_traffic, settle
from orchestrator.traffic.status import adopt

SERVICE = "web"


def _verified(store: SQLiteStateStore, side: Side, level: str = "L1") -> None:
    setup = AuditEntryInput(actor="test", command="setup")
    patched(store, SERVICE, side, level, audit=setup)
    store.record_verification(SERVICE, side, True, level, "ok", audit=setup)


def test_adopt_ends_a_crashed_rollback_with_its_semantics(tmp_path: Path) -> None:
    """`status --adopt` after a rollback died between the router and the record used to
    erase the pending flip: the side that failed under traffic stayed `verified`, and
    `flip --to` it passed the gate."""
    router = FakeRouter({SERVICE: "blue"})
    with temp_store(tmp_path) as store:
        _verified(store, "green")
        move_traffic(store, router, FlipRequest(service=SERVICE, command="flip", reason="x",
                                                actor="op", to="green"))
        with crash_at("traffic:router"), pytest.raises(SimulatedCrash):
            move_traffic(store, router, FlipRequest(service=SERVICE, command="rollback",
                                                    reason="INC-1", actor="op"))
    with temp_store(tmp_path) as store:
        assert adopt(store, router, SERVICE, "op", "LB looked wrong") == "blue"
        green = store.get_side(SERVICE, "green")
        assert green is not None and green.state == "failed_live"
        records = [(r.command, r.result) for r in store.audit_records(SERVICE)]
        assert ("rollback", "recovered") in records and records[-1] == ("adopt", "ok")
        with pytest.raises(VerificationFailed, match="failed_live"):
            move_traffic(store, router, FlipRequest(service=SERVICE, command="flip",
                                                    reason="x", actor="op", to="green"))
        assert router.memory[SERVICE] == "blue"


@pytest.mark.parametrize("how", ["lost_reply", "repersist_refused"])
def test_a_move_not_known_to_be_persisted_is_recorded_as_not_persisted(
    tmp_path: Path, how: str
) -> None:
    """A flip whose reply was lost after `set map`, or a crashed flip whose re-persisting
    failed, used to be recorded as "not confirmed" (i.e. persisted): a reload then sent
    traffic back while the store said nothing about it."""
    router = FakeRouter({SERVICE: "blue"})
    with temp_store(tmp_path) as store:
        _verified(store, "green")
        request = FlipRequest(service=SERVICE, command="flip", reason="x", actor="op",
                              to="green")
        if how == "lost_reply":
            router.fail_next("lost_reply")
            with pytest.raises(FlipIncomplete):
                move_traffic(store, router, request)
        else:
            router.fail_next("persist", "refuse")
            with crash_at("traffic:router"), pytest.raises(SimulatedCrash):
                move_traffic(store, router, request)
            settle(store, router, SERVICE, "op")  # completes it; re-persisting is refused
        svc = store.get_service(SERVICE)
        assert svc is not None and svc.live_side == "green"
        assert str(svc.flip_problem).startswith("not persisted"), svc.flip_problem
        assert router.persisted[SERVICE] == "blue"  # a reload would go back: said so


def test_a_second_rollback_after_one_that_aborted_a_run_changes_nothing(
    tmp_path: Path,
) -> None:
    """Two operators roll back during a rollout that has not flipped yet: the first aborts
    the run and keeps traffic where it is; the second used to roll back the flip before
    the run (green -> blue)."""
    router = FakeRouter({SERVICE: "blue"})
    with temp_store(tmp_path) as store:
        _verified(store, "green")
        move_traffic(store, router, FlipRequest(service=SERVICE, command="flip", reason="x",
                                                actor="op", to="green"))
        store.create_run("r1", "rollout", SERVICE, {}, "ci")
        store.journal_begin("r1", "precheck")
        store.journal_end("r1", "precheck", {"live": "green", "standby": "blue"})
        outcomes = [
            move_traffic(store, router, FlipRequest(service=SERVICE, command="rollback",
                                                    reason="INC-1", actor=who,
                                                    abort_in_flight=True))
            for who in ("alice", "bob")
        ]
        assert [o.changed for o in outcomes] == [False, False]
        assert "already rolled back" in outcomes[1].message
        assert "--to blue" in outcomes[1].message
        assert router.memory[SERVICE] == "green" and router.flips == [(SERVICE, "green")]
        assert [(r.command, r.result) for r in store.audit_records(SERVICE)][-1] == (
            "rollback", "kept")
        # an explicit rollback still goes back, with rollback semantics
        back = move_traffic(store, router, FlipRequest(service=SERVICE, command="rollback",
                                                       reason="INC-1", actor="carol",
                                                       to="blue", abort_in_flight=True))
        assert back.changed and router.memory[SERVICE] == "blue"
        svc = store.get_service(SERVICE)
        assert svc is not None and svc.rollback_kept is None
        green = store.get_side(SERVICE, "green")
        assert green is not None and green.state == "failed_live"


def test_no_patch_while_the_live_sides_flip_is_not_persisted(tmp_path: Path) -> None:
    """A flip recorded as not persisted, then a rollout: a reload of the load balancer
    between its precheck and its patch step sent traffic back to the standby, and Ansible
    patched the side taking traffic. The store now refuses to begin that patch (the
    precheck persists the live side again, issue 20: here that fails too)."""
    router = FakeRouter({SERVICE: "blue"})
    with temp_store(tmp_path) as store:
        _verified(store, "green")
        router.fail_next("persist", "persist")  # the flip; the precheck's persist again
        with pytest.raises(FlipIncomplete):
            move_traffic(store, router, FlipRequest(service=SERVICE, command="flip",
                                                    reason="x", actor="op", to="green"))
        assert settle(store, router, SERVICE, "ci") == "green"  # the rollout's precheck
        router.reload()  # traffic is back on blue
        with pytest.raises(StateError, match="not persisted") as caught:
            store.begin_patch(SERVICE, "blue", "L2", audit=AuditEntryInput(
                actor="ci", command="rollout.patch.begin"))
        assert caught.value.hint is not None and "flip web --to green" in caught.value.hint
        blue = store.get_side(SERVICE, "blue")
        assert blue is None or blue.state == "untouched"
        # once persisted (the hint), patching the standby is fine again
        router.memory[SERVICE] = "green"
        move_traffic(store, router, FlipRequest(service=SERVICE, command="flip", reason="x",
                                                actor="op", to="green"))
        store.begin_patch(SERVICE, "blue", "L2", audit=AuditEntryInput(
            actor="ci", command="rollout.patch.begin"))


def test_adopting_the_side_a_reload_restored_forgets_the_old_flips_problem(
    tmp_path: Path,
) -> None:
    """A flip not persisted, a reload (traffic back on blue), `status --adopt`: the store
    kept "not persisted" about a flip that no longer holds, and refused every patch."""
    router = FakeRouter({SERVICE: "blue"})
    with temp_store(tmp_path) as store:
        _verified(store, "green")
        router.fail_next("persist")
        with pytest.raises(FlipIncomplete):
            move_traffic(store, router, FlipRequest(service=SERVICE, command="flip",
                                                    reason="x", actor="op", to="green"))
        router.reload()
        assert adopt(store, router, SERVICE, "op", "reload undid it") == "blue"
        svc = store.get_service(SERVICE)
        assert svc is not None and svc.live_side == "blue" and svc.flip_problem is None
        store.begin_patch(SERVICE, "green", "L2", audit=AuditEntryInput(
            actor="ci", command="rollout.patch.begin"))
        # adopting the side that is live keeps a problem that still holds
        setup = AuditEntryInput(actor="test", command="setup")
        store.set_flip_problem(SERVICE, "not persisted: disk full", audit=setup)
        store.set_live_side(SERVICE, "blue", audit=setup)
        svc = store.get_service(SERVICE)
        assert svc is not None and svc.flip_problem == "not persisted: disk full"


def _split(store: SQLiteStateStore, router: FakeRouter) -> None:
    """The adversarial reload (kernel-truth's note): a reload lands inside the kernel's
    re-persist of blue, between `show map` and the file write: memory routes to green, the
    map file to blue. The kernel names it and stops (StateMismatch)."""
    _verified(store, "green")
    router.fail_next("persist")
    with pytest.raises(FlipIncomplete):
        move_traffic(store, router, FlipRequest(service=SERVICE, command="flip",
                                                reason="x", actor="op", to="green"))
    router.memory[SERVICE] = "blue"  # the operator moved it back by hand
    store.set_live_side(SERVICE, "blue", problem="not persisted: disk full",
                        audit=AuditEntryInput(actor="test", command="setup"))
    router.memory[SERVICE], router.persisted[SERVICE] = "green", "blue"


def test_adopt_persists_what_it_adopts(tmp_path: Path) -> None:
    """`status --adopt` recorded the router's memory (green) with no flip problem while the
    map on disk still routed to blue: the next reload sent traffic to blue, silently."""
    router = FakeRouter({SERVICE: "blue"})
    with temp_store(tmp_path) as store:
        _split(store, router)
        assert adopt(store, router, SERVICE, "op", "memory is right") == "green"
        assert router.memory[SERVICE] == router.persisted[SERVICE] == "green"
        svc = store.get_service(SERVICE)
        assert svc is not None and svc.live_side == "green" and svc.flip_problem is None
        router.reload()
        assert router.live(SERVICE) == "green"
        last = store.audit_records(SERVICE)[-1]
        assert (last.command, last.result) == ("adopt", "ok")


@pytest.mark.parametrize("fault", ["persist", "reload"])
def test_adopt_names_a_persist_that_failed(tmp_path: Path, fault: str) -> None:
    """When the adopted side cannot be persisted (disk full; a reload inside the persist
    moved traffic back to what the file held), the store says so, in the adopt's own
    write: the side traffic is on afterwards, and "not persisted"."""
    router = FakeRouter({SERVICE: "blue"})
    with temp_store(tmp_path) as store:
        _split(store, router)
        router.fail_next(fault)  # type: ignore[arg-type]
        now = adopt(store, router, SERVICE, "op", "memory is right")
        assert now == router.live(SERVICE) == ("green" if fault == "persist" else "blue")
        svc = store.get_service(SERVICE)
        assert svc is not None and svc.live_side == now, svc
        assert (svc.flip_problem or "").startswith("not persisted"), svc
        last = store.audit_records(SERVICE)[-1]
        assert (last.command, last.result) == ("adopt", "not persisted")
        assert last.after["flip_problem"] == svc.flip_problem
        # the next traffic command persists the live side again and clears it
        router.heal()
        assert settle(store, router, SERVICE, "op") == now
        svc = store.get_service(SERVICE)
        assert svc is not None and svc.flip_problem is None
        assert router.persisted[SERVICE] == router.memory[SERVICE] == now
