"""After a move that did not end as planned, the kernel records where traffic IS (read
back from the router) and the next command persists the live side again wherever the map
on disk may differ (issue 20, items 4 and 5). Fake router, real SQLite store."""

from __future__ import annotations

from pathlib import Path

import pytest

from orchestrator.errors import BluegreenError, RouterError, StateError
from orchestrator.rollout.runner import Rollout
from orchestrator.routers.base import TrafficCounters
from orchestrator.sides import Side
from orchestrator.state import SQLiteStateStore
from orchestrator.testing import (
    FakeRouter,
    SimulatedCrash,
    crash_at,
    fake_config,
    fake_tools,
    temp_store,
)
from orchestrator.traffic import FlipRequest, move_traffic, settle
from tests.support.kernel import verified


def flip_to(side: Side) -> FlipRequest:
    return FlipRequest(service="web", command="flip", reason="test", actor="alice", to=side)


def problem(store: SQLiteStateStore) -> str | None:
    svc = store.get_service("web")
    assert svc is not None
    return svc.flip_problem


def store_cannot_record(store: SQLiteStateStore, monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(*_a: object, **_k: object) -> None:
        raise StateError("state database: disk full")

    monkeypatch.setattr(store, "record_flip", broken)


def test_a_half_successful_undo_says_where_traffic_is_and_the_next_command_persists_it(
    store: SQLiteStateStore, router: FakeRouter, monkeypatch: pytest.MonkeyPatch
) -> None:
    verified(store, "green")
    store_cannot_record(store, monkeypatch)
    router.fail_next(None, "persist")  # the flip works; its undo is not persisted
    with pytest.raises(StateError) as caught:
        move_traffic(store, router, flip_to("green"))
    err = caught.value
    assert router.memory["web"] == "blue" and router.persisted["web"] == "green"
    assert "moved traffic back to blue" in err.message and "traffic is on blue" in str(err.hint)
    assert "traffic is on green" not in err.message + str(err.hint)
    assert "recorded as the flip problem of blue" in err.message
    svc = store.get_service("web")
    assert svc is not None and svc.live_side == "blue" and svc.pending_flip is not None
    assert str(svc.flip_problem).startswith("not persisted")
    monkeypatch.undo()
    assert settle(store, router, "web", "bob") == "blue"  # the next command
    assert router.memory["web"] == router.persisted["web"] == "blue"
    svc = store.get_service("web")
    assert svc is not None and svc.pending_flip is None and svc.flip_problem is None
    assert store.verify_audit().ok


def test_a_half_successful_undo_the_store_cannot_name_is_repaired_by_the_cancel(
    store: SQLiteStateStore, router: FakeRouter, monkeypatch: pytest.MonkeyPatch
) -> None:
    verified(store, "green")
    store_cannot_record(store, monkeypatch)

    def also_broken(*_a: object, **_k: object) -> None:
        raise StateError("state database: disk full")

    monkeypatch.setattr(store, "set_flip_problem", also_broken)
    router.fail_next(None, "persist")
    with pytest.raises(StateError, match="the journaled flip says so"):
        move_traffic(store, router, flip_to("green"))
    monkeypatch.undo()
    svc = store.get_service("web")
    assert svc is not None and svc.pending_flip is not None  # what names the disagreement
    # the router's memory equals the flip's from_side, the disk holds its to_side: the
    # cancel persists blue again
    assert settle(store, router, "web", "bob") == "blue"
    assert router.persisted["web"] == "blue" and problem(store) is None


def test_an_undo_that_failed_before_moving_says_traffic_is_on_the_target(
    store: SQLiteStateStore, router: FakeRouter, monkeypatch: pytest.MonkeyPatch
) -> None:
    verified(store, "green")
    store_cannot_record(store, monkeypatch)
    router.fail_next(None, "refuse")
    with pytest.raises(StateError, match="traffic is on green"):
        move_traffic(store, router, flip_to("green"))
    monkeypatch.undo()
    assert settle(store, router, "web", "bob") == "green"  # recorded as recovered
    svc = store.get_service("web")
    assert svc is not None and svc.live_side == "green" and svc.pending_flip is None


def test_a_reload_between_set_and_persist_is_no_move(
    store: SQLiteStateStore, router: FakeRouter
) -> None:
    verified(store, "green")
    router.fail_next("reload")
    with pytest.raises(RouterError) as caught:
        move_traffic(store, router, flip_to("green"))
    message = caught.value.message
    assert "did not hold" in message and "traffic is on blue" in message
    assert "written again for blue" in message
    assert router.memory["web"] == router.persisted["web"] == "blue"
    svc = store.get_service("web")
    assert svc is not None and svc.live_side == "blue" and svc.pending_flip is None
    assert svc.flip_problem is None
    results = [(r.command, r.result) for r in store.audit_records("web")]
    assert ("flip", "incomplete") not in results and ("flip", "ok") not in results
    assert results[-1] == ("flip.failed", "failed")


def test_a_reload_then_a_failed_persist_is_named_until_the_next_command(
    store: SQLiteStateStore, router: FakeRouter
) -> None:
    verified(store, "green")
    router.fail_next("reload", "persist")  # the flip; then persisting blue again
    with pytest.raises(RouterError, match="may still route to green"):
        move_traffic(store, router, flip_to("green"))
    assert router.memory["web"] == "blue" and router.persisted["web"] == "green"
    svc = store.get_service("web")
    assert svc is not None and svc.live_side == "blue" and svc.pending_flip is None
    assert str(svc.flip_problem).startswith("not persisted")  # the store never says "fine"
    assert settle(store, router, "web", "bob") == "blue"  # a rollout's precheck
    assert router.persisted["web"] == "blue" and problem(store) is None
    assert ("settle.repair", "ok") in [(r.command, r.result) for r in store.audit_records("web")]


def test_a_pending_flip_moved_back_in_memory_is_cancelled_and_persisted_again(
    tmp_path: Path, router: FakeRouter
) -> None:
    with temp_store(tmp_path) as store:
        verified(store, "green")
        with crash_at("traffic:router"), pytest.raises(SimulatedCrash):
            move_traffic(store, router, flip_to("green"))
    router.memory["web"] = "blue"  # memory back (an undo that died before persisting)
    assert router.persisted["web"] == "green"
    with temp_store(tmp_path) as store:
        assert settle(store, router, "web", "bob") == "blue"
        assert router.persisted["web"] == "blue"
        svc = store.get_service("web")
        assert svc is not None and svc.pending_flip is None and svc.flip_problem is None


def test_the_bakes_automatic_rollback_reports_the_truth_after_a_reload(
    tmp_path: Path,
) -> None:
    reads = {"n": 0}

    def count(service: str, side: Side) -> TrafficCounters:
        reads["n"] += 1  # the baseline, then 5xx pile up
        return TrafficCounters(0, 0) if reads["n"] == 1 else TrafficCounters(100, 60)

    router = FakeRouter(count=count)
    with temp_store(tmp_path) as store:
        engine = Rollout(fake_config(tmp_path, bake_seconds=5), store, router, actor="ci",
                         tools=fake_tools())
        router.fail_next(None, "reload")  # the flip works; the automatic rollback not
        with pytest.raises(BluegreenError) as caught:
            engine.start("web")
        message = caught.value.message
        assert "traffic is still on green" in message and "back on blue" not in message
        assert router.memory["web"] == router.persisted["web"] == "green"
        svc = store.get_service("web")
        assert svc is not None and svc.live_side == "green" and svc.flip_problem is None
