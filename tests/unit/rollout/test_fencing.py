"""A rollout cannot lift a quarantine nor flip to a side that changed since its
verification (issue 20, items 3 and 8), on the fakes and the real SQLite store."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from orchestrator.errors import Aborted, OutsideWindow, VerificationFailed
from orchestrator.rollout.records import VerifyRecord
from orchestrator.rollout.runner import Rollout
from orchestrator.sides import Side
from orchestrator.state import SQLiteStateStore
from orchestrator.state.models import AuditEntryInput
from orchestrator.state.transitions import SideChanged
from orchestrator.testing import (
    FakeGate,
    FakePatcher,
    FakeRouter,
    fake_config,
    fake_tools,
    patched,
    temp_store,
)
from orchestrator.traffic.quarantine import quarantine_side

OPERATOR = AuditEntryInput(actor="oncall", command="test", reason="INC-7")


def rollout(tmp_path: Path, store: SQLiteStateStore, router: FakeRouter,
            **kw: Any) -> Rollout:
    patcher, gate = kw.pop("patcher", None), kw.pop("gate", None)
    return Rollout(fake_config(tmp_path), store, router, actor="ci",
                   tools=fake_tools(patcher=patcher, gate=gate), **kw)


def state(store: SQLiteStateStore, side: Side) -> str:
    rec = store.get_side("web", side)
    return rec.state if rec else "untouched"


def test_a_quarantine_during_the_patch_stands_and_nothing_flips(tmp_path: Path) -> None:
    router = FakeRouter()

    def incident(service: str, side: Side) -> None:  # `bluegreen quarantine`, while Ansible runs
        with SQLiteStateStore(tmp_path / "state" / "state.db") as other:
            out = quarantine_side(other, router, service, side, "INC-7 forensics", "oncall")
            assert out.changed and out.flip is None

    with temp_store(tmp_path) as store:
        with pytest.raises(Aborted, match="aborted by `quarantine`"):
            rollout(tmp_path, store, router, patcher=FakePatcher(during=incident)).start("web")
        assert state(store, "green") == "quarantined" and router.flips == []
        run = store.list_runs(service="web")[-1]
        assert run.status == "aborted" and store.get_lock("web") is None


def test_a_mark_that_raced_the_patch_is_not_overwritten_by_its_record(tmp_path: Path) -> None:
    """Defence in depth: even a run that did not see its abort cannot record its patch
    over a quarantine (compare-and-set on the generation `begin_patch` returned)."""
    router = FakeRouter()

    def mark(service: str, side: Side) -> None:
        with SQLiteStateStore(tmp_path / "state" / "state.db") as other:
            other.quarantine(service, side, "INC-7 forensics", audit=OPERATOR)

    with temp_store(tmp_path) as store:
        with pytest.raises(SideChanged, match="changed during the patch") as caught:
            rollout(tmp_path, store, router, patcher=FakePatcher(during=mark)).start("web")
        assert "quarantined" in caught.value.message
        assert state(store, "green") == "quarantined" and router.flips == []
        assert store.list_runs(service="web")[-1].status == "failed"


def test_resume_does_not_flip_to_a_side_that_changed_since_its_verification(
    tmp_path: Path,
) -> None:
    """Scenario 8: verified, the flip deferred by the window; a rebuild re-patched and
    re-verified the side overnight (its own gate passed); the resumed flip is refused."""
    router = FakeRouter()
    window = {"closed": "the window closed"}
    with temp_store(tmp_path) as store:
        with pytest.raises(OutsideWindow):
            rollout(tmp_path, store, router,
                    may_flip=lambda _s: window.get("closed")).start("web")
        run = store.list_runs(service="web")[-1]
        assert run.status == "deferred" and state(store, "green") == "verified"
        verify_end = [e for e in store.journal(run.run_id)
                      if e.step == "verify" and e.phase == "end"][0]
        green = store.get_side("web", "green")
        assert green is not None and verify_end.data["generation"] == green.generation
        assert verify_end.data["level"] == green.verified_patch_level
        # overnight: `rebuild` re-images green at other versions, its own gate passes
        side = patched(store, "web", "green", "rebuild-20261207", audit=OPERATOR)
        store.record_verification("web", "green", True, "rebuild-20261207", "ok",
                                  audit=OPERATOR, expected_generation=side.generation)
        window.clear()
        again = store.get_run(run.run_id)
        assert again is not None
        with pytest.raises(VerificationFailed, match="changed since the verification"):
            rollout(tmp_path, store, router, may_flip=lambda _s: None).resume(again)
        assert router.memory["web"] == "blue" and router.flips == []
        svc = store.get_service("web")
        assert svc is not None and svc.live_side == "blue" and svc.pending_flip is None
        assert store.verify_audit().ok


def test_resume_flips_when_the_verified_side_is_unchanged(tmp_path: Path) -> None:
    router = FakeRouter()
    window = {"closed": "the window closed"}
    with temp_store(tmp_path) as store:
        with pytest.raises(OutsideWindow):
            rollout(tmp_path, store, router,
                    may_flip=lambda _s: window.get("closed")).start("web")
        run = store.get_run(store.list_runs(service="web")[-1].run_id)
        assert run is not None
        result = rollout(tmp_path, store, router, may_flip=lambda _s: None).resume(run)
        assert result.status == "done" and router.memory["web"] == "green"


@pytest.mark.parametrize("changed_overnight", [False, True])
def test_a_run_deferred_before_the_flip_bound_to_its_verification_verifies_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, changed_overnight: bool,
) -> None:
    """Review D6: a run deferred by a version whose verify step journaled no generation
    has nothing to bind its flip to. On resume it verifies again (journaled, bound): a side
    still good flips; one a rebuild changed overnight fails the gate and nothing moves."""
    router = FakeRouter()
    with temp_store(tmp_path) as store:
        journaled = VerifyRecord.as_dict
        with monkeypatch.context() as old_version:  # what the earlier version journaled
            old_version.setattr(VerifyRecord, "as_dict", lambda self: {
                k: v for k, v in journaled(self).items() if k not in ("generation", "level")})
            with pytest.raises(OutsideWindow):
                rollout(tmp_path, store, router,
                        may_flip=lambda _s: "the window closed").start("web")
        run = store.get_run(store.list_runs(service="web")[-1].run_id)
        assert run is not None and run.status == "deferred"
        assert [e.data.get("generation") for e in store.journal(run.run_id)
                if e.step == "verify" and e.phase == "end"] == [None]
        if changed_overnight:
            side = patched(store, "web", "green", "rebuild-20261207", audit=OPERATOR)
            store.record_verification("web", "green", True, "rebuild-20261207", "ok",
                                      audit=OPERATOR, expected_generation=side.generation)
        gate = FakeGate(verdicts={("web", "green"): not changed_overnight})
        resumed = rollout(tmp_path, store, router, may_flip=lambda _s: None, gate=gate)
        if changed_overnight:
            with pytest.raises(VerificationFailed, match="failed verification"):
                resumed.resume(run)
            assert router.memory["web"] == "blue" and router.flips == []
            assert state(store, "green") == "verify_failed"
        else:
            result = resumed.resume(run)
            assert result.status == "done" and router.memory["web"] == "green"
            ends = [e.data for e in store.journal(run.run_id)
                    if e.step == "verify" and e.phase == "end"]
            assert len(ends) == 2 and isinstance(ends[-1]["generation"], int), ends
        assert gate.calls == [("web", "green")]  # verified again, once
        assert store.verify_audit().ok
