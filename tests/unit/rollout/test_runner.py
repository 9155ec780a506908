"""The rollout on the safety kernel, with fakes for Ansible, the probes and the router and
the real SQLite store: side states, the auto rollback, crashes and resume."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from orchestrator.errors import Aborted, PatchFailed, RolledBack, VerificationFailed
from orchestrator.rollout.runner import Rollout
from orchestrator.routers.base import TrafficCounters
from orchestrator.sides import Side
from orchestrator.state import SQLiteStateStore
from orchestrator.state.models import AuditEntryInput
from orchestrator.testing import (
    FakeGate,
    FakePatcher,
    FakeRouter,
    SimulatedCrash,
    crash_at,
    fake_config,
    fake_tools,
    patched,
    temp_store,
)
from orchestrator.traffic import FlipRequest, move_traffic


def rollout(tmp_path: Path, store: SQLiteStateStore, router: FakeRouter, *,
            bake_seconds: float = 0.0, **tools: Any) -> Rollout:
    config = fake_config(tmp_path, bake_seconds=bake_seconds)
    return Rollout(config, store, router, actor="ci", tools=fake_tools(**tools))


def state(store: SQLiteStateStore, side: Side) -> str:
    rec = store.get_side("web", side)
    return rec.state if rec else "untouched"


def commands(store: SQLiteStateStore) -> list[tuple[str, str]]:
    return [(r.command, r.result) for r in store.audit_records("web")]


def test_a_rollout_patches_verifies_and_flips_the_standby_only(tmp_path: Path) -> None:
    router, patcher, gate = FakeRouter(), FakePatcher(), FakeGate(fingerprints={"g1": "f"})
    with temp_store(tmp_path) as store:
        result = rollout(tmp_path, store, router, patcher=patcher, gate=gate).start("web")
        assert result.status == "done" and (result.from_side, result.to_side) == ("blue", "green")
        assert patcher.calls == [("web", "green")] and gate.calls == [("web", "green")]
        green = store.get_side("web", "green")
        assert green is not None and green.state == "verified" and green.hosts == {"g1": "f"}
        svc = store.get_service("web")
        assert svc is not None and (svc.live_side, svc.rollback_to) == ("green", "blue")
        assert router.memory["web"] == "green"
        assert [c for c in commands(store) if c[0].startswith("rollout.")] == [
            ("rollout.patch.begin", "ok"), ("rollout.patch", "ok"),
            ("rollout.flip.begin", "started"), ("rollout.flip", "ok")]


def test_a_failed_patch_leaves_the_side_patching_and_no_flip_can_target_it(
    tmp_path: Path,
) -> None:
    router, patcher = FakeRouter(), FakePatcher(fail={("web", "green")})
    with temp_store(tmp_path) as store:
        with pytest.raises(PatchFailed):
            rollout(tmp_path, store, router, patcher=patcher).start("web")
        assert state(store, "green") == "patching"
        for request in (
            FlipRequest(service="web", command="flip", reason="x", actor="op", to="green",
                        abort_in_flight=True),
            FlipRequest(service="web", command="rollback", reason="x", actor="op", to="green",
                        abort_in_flight=True),
        ):
            with pytest.raises(VerificationFailed, match="patching"):
                move_traffic(store, router, request)
        assert router.memory["web"] == "blue"


def test_rollback_during_the_patch_aborts_the_run_and_traffic_stays(tmp_path: Path) -> None:
    router = FakeRouter()
    seen: list[Any] = []

    def incident(service: str, side: Side) -> None:  # an operator, while Ansible runs
        with SQLiteStateStore(tmp_path / "state" / "state.db") as other:
            seen.append(move_traffic(other, router, FlipRequest(
                service=service, command="rollback", reason="INC-1", actor="oncall",
                abort_in_flight=True)))

    with temp_store(tmp_path) as store:
        with pytest.raises(Aborted, match="aborted by `rollback`"):
            rollout(tmp_path, store, router, patcher=FakePatcher(during=incident)).start("web")
        assert not seen[0].changed and seen[0].aborted_run is not None
        assert router.memory["web"] == "blue" and router.flips == []
        run = store.get_run(seen[0].aborted_run)
        assert run is not None and run.status == "aborted"
        assert store.get_lock("web") is None  # released by the run itself
        assert state(store, "green") == "patching"  # cancelled mid-patch: not a target


def test_bake_degradation_rolls_back_and_the_new_side_failed_live(tmp_path: Path) -> None:
    reads = {"n": 0}

    def count(service: str, side: Side) -> TrafficCounters:
        reads["n"] += 1  # the first read is the baseline; then 5xx pile up
        return TrafficCounters(0, 0) if reads["n"] == 1 else TrafficCounters(100, 60)

    router = FakeRouter(count=count)
    with temp_store(tmp_path) as store:
        with pytest.raises(RolledBack, match="back on blue"):
            rollout(tmp_path, store, router, bake_seconds=5).start("web")
        assert router.memory["web"] == "blue"
        assert state(store, "green") == "failed_live"
        svc = store.get_service("web")
        assert svc is not None and (svc.live_side, svc.rollback_to) == ("blue", "blue")
        assert ("rollout.auto-rollback", "ok") in commands(store)
        # and nobody goes straight back to the side that failed under traffic
        with pytest.raises(VerificationFailed, match="failed_live"):
            move_traffic(store, router, FlipRequest(
                service="web", command="flip", reason="x", actor="op", to="green",
                abort_in_flight=True))


@pytest.mark.parametrize("point", ["traffic:router:rollout.flip", "traffic:intent:rollout.flip",
                                   "traffic:recorded:rollout.flip", "patch:begin", "flip:end"])
def test_a_crash_then_resume_ends_done_with_one_flip(tmp_path: Path, point: str) -> None:
    router = FakeRouter()
    with temp_store(tmp_path) as store:
        with crash_at(point), pytest.raises(SimulatedCrash):
            rollout(tmp_path, store, router).start("web")
        run_id = store.list_runs(service="web")[-1].run_id
    with temp_store(tmp_path) as store:  # a new process: `bluegreen resume`
        run = store.get_run(run_id)
        assert run is not None and run.status == "running"
        result = rollout(tmp_path, store, router).resume(run)
        assert result.status == "done" and router.memory["web"] == "green"
        flips = [c for c in commands(store) if c[0] == "rollout.flip"]
        assert len(flips) == 1, commands(store)
        svc = store.get_service("web")
        assert svc is not None and svc.live_side == "green" and svc.pending_flip is None
        assert store.verify_audit().ok


def test_a_crash_inside_the_auto_rollback_resumes_as_rolled_back(tmp_path: Path) -> None:
    reads = {"n": 0}

    def count(service: str, side: Side) -> TrafficCounters:
        reads["n"] += 1
        return TrafficCounters(0, 0) if reads["n"] == 1 else TrafficCounters(100, 60)

    router = FakeRouter(count=count)
    with temp_store(tmp_path) as store:
        with crash_at("traffic:router:rollout.auto-rollback"), pytest.raises(SimulatedCrash):
            rollout(tmp_path, store, router, bake_seconds=5).start("web")
        run_id = store.list_runs(service="web")[-1].run_id
        svc = store.get_service("web")
        assert router.memory["web"] == "blue" and svc is not None and svc.live_side == "green"
    with temp_store(tmp_path) as store:
        run = store.get_run(run_id)
        assert run is not None
        with pytest.raises(RolledBack):
            rollout(tmp_path, store, router).resume(run)
        ended = store.get_run(run_id)
        assert ended is not None and ended.status == "rolled_back"
        svc = store.get_service("web")
        assert svc is not None and svc.live_side == "blue" and svc.pending_flip is None
        assert state(store, "green") == "failed_live"
        assert ("rollout.auto-rollback", "recovered") in commands(store)


# The journal of a run stopped after its patch step, as the rollout wrote it before its
# steps were objects with typed records (bluegreen < the rollout/ split): resume reads it.
OLD_PRECHECK = {"live": "blue", "standby": "green", "standby_hosts": ["web-green-1"]}
OLD_PATCH = {
    "side": "green", "patch_level": "demo-web=1.0.1-2", "asked": "demo-web=1.0.1",
    "seconds": 3.2,
    "hosts": {"web-green-1": {"versions": {"demo-web": "1.0.1"}, "restarted": ["demo-web"]}},
    "changes": {"summary": "1 host: demo-web 1.0.0 -> 1.0.1", "hosts": {}},
    "warnings": [],
}


def test_a_run_journaled_by_the_old_engine_resumes_from_its_journal(tmp_path: Path) -> None:
    router, patcher, gate = FakeRouter(), FakePatcher(), FakeGate()
    with temp_store(tmp_path) as store:
        run = store.create_run("web-old-1", "rollout", "web",
                               {"packages": ["demo-web=1.0.1"], "security_updates": False},
                               "ci")
        store.acquire_lock("web", run.run_id)
        for step, data in (("precheck", OLD_PRECHECK), ("patch", OLD_PATCH)):
            store.journal_begin(run.run_id, step, {"at": "2026-11-30T10:00:00+00:00"})
            store.journal_end(run.run_id, step, data)
        audit = AuditEntryInput(actor="ci", command="rollout.patch", service="web")
        store.begin_patch("web", "green", "demo-web=1.0.1", audit=audit)
        patched(store, "web", "green", "demo-web=1.0.1-2", audit=audit)
        result = rollout(tmp_path, store, router, patcher=patcher, gate=gate).resume(run)
        assert result.status == "done" and (result.from_side, result.to_side) == ("blue", "green")
        assert patcher.calls == [] and gate.calls == [("web", "green")]  # patch not redone
        assert set(result.steps) == {"verify", "flip", "bake"}
        assert "patched (demo-web=1.0.1-2)" in result.message  # installed, not asked
        ends = {e.step: e.data for e in store.journal(run.run_id) if e.phase == "end"}
        assert ends["precheck"] == OLD_PRECHECK and ends["patch"] == OLD_PATCH
        assert set(ends["flip"]) == {"from", "to", "seconds", "confirmed_by",
                                     "old_side_sessions_left"}
        assert router.memory["web"] == "green"


def test_records_round_trip_the_journal_format() -> None:
    from orchestrator.rollout.records import PatchRecord, Plan

    assert Plan.from_dict(OLD_PRECHECK).as_dict() == OLD_PRECHECK
    assert PatchRecord.from_dict(OLD_PATCH).as_dict() == OLD_PATCH


def test_the_inventory_is_parsed_once_per_rollout_and_passed_down(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import orchestrator.inventory as inventory

    config = fake_config(tmp_path)
    (tmp_path / "hosts.yml").write_text(
        "all:\n  children:\n"
        "    web_blue: {hosts: {web-blue-1: {ansible_host: 10.9.0.1}}}\n"
        "    web_green: {hosts: {web-green-1: {ansible_host: 10.9.0.2}}}\n")
    parses: list[object] = []
    real_parse = inventory._parse
    monkeypatch.setattr(inventory, "_parse", lambda *a: parses.append(a) or real_parse(*a))
    patcher, gate, fleets, probed = FakePatcher(), FakeGate(), [], []

    def patch(*args: Any, fleet: object, **kwargs: Any) -> Any:
        fleets.append(fleet)
        return patcher(*args, **kwargs)

    def verify(*args: Any, fleet: object, **kwargs: Any) -> Any:
        fleets.append(fleet)
        return gate(*args, **kwargs)

    tools = fake_tools()
    tools.check_inputs, tools.patch, tools.verify = True, patch, verify
    tools.unreachable = lambda hosts: probed.extend(h.name for h in hosts) or []
    tools.recheck = lambda _config, _service, fleet: fleets.append(fleet) or None
    with temp_store(tmp_path) as store:
        result = Rollout(config, store, FakeRouter(), actor="ci", tools=tools).start("web")
    assert result.status == "done" and len(parses) == 1
    assert probed == ["web-blue-1", "web-green-1"]
    assert result.as_dict()["steps"]["precheck"]["standby_hosts"] == ["web-green-1"]
    assert len(fleets) == 3 and all(f is fleets[0] and f is not None for f in fleets)


def test_a_patch_that_changed_no_host_leaves_the_rollback_side_eligible(tmp_path: Path) -> None:
    """Issue 22: a rollout whose patch of blue (the rollback side) fails before any task ran
    (sudo wants a password) gives blue back its state, audited; `rollback` still works."""
    from orchestrator.inventory import Fleet, Host, ServiceHosts

    router = FakeRouter()
    fleet = Fleet({"web": ServiceHosts("web", (Host("web-blue-1", "10.9.0.1"),),
                                       (Host("web-green-1", "10.9.0.2"),))})
    config = fake_config(tmp_path)
    with temp_store(tmp_path) as store:
        first = Rollout(config, store, router, actor="ci", tools=fake_tools(), fleet=fleet)
        assert first.start("web").status == "done"  # green live, blue the rollback side
        assert store.get_side("web", "blue") is None  # untouched: never patched
        tools = fake_tools(patcher=FakePatcher(untouched={("web", "blue")}))
        with pytest.raises(PatchFailed) as caught:
            Rollout(config, store, router, actor="ci", tools=tools, fleet=fleet).start("web")
        assert "no host of blue was changed (web-blue-1: sudo refused" in caught.value.message
        assert "bluegreen rollout web" in (caught.value.hint or "")
        after = store.get_side("web", "blue")
        assert after is not None and after.state == "untouched" and after.patch_level is None
        assert ("rollout.patch.untouched", "ok") in commands(store)
        result = move_traffic(store, router, FlipRequest(
            service="web", command="rollback", reason="x", actor="op", abort_in_flight=True))
        assert result.to_side == "blue" and router.memory["web"] == "blue"

        # a patch whose task ran and failed may have changed the host: blue stays patching
        tools = fake_tools(patcher=FakePatcher(fail={("web", "green")}))
        with pytest.raises(PatchFailed, match="green stays `patching`"):
            Rollout(config, store, router, actor="ci", tools=tools, fleet=fleet).start("web")
        assert state(store, "green") == "patching"
