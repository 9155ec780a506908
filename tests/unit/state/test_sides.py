"""Side states, flips and the traffic lock of the SQLite store (schema 2), on real files."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from orchestrator.errors import LockHeld, StateError
from orchestrator.state import AuditEntryInput, SQLiteStateStore, StateStore
from orchestrator.state.sqlite.schema import MIGRATIONS
from orchestrator.state.transitions import SideChanged, TransitionRefused
from orchestrator.testing import patched
from tests.unit.state.conftest import Opener

ENTRY = AuditEntryInput(actor="alice", command="test", reason="unit test")


@pytest.fixture
def store(opener: Opener) -> Iterator[StateStore]:
    """A store of every backend (see conftest.py)."""
    opened = opener()
    try:
        yield opened
    finally:
        opened.close()


def live(store: StateStore, side: str = "blue") -> None:
    store.set_live_side("web", side, audit=ENTRY)  # type: ignore[arg-type]


# -- migration ------------------------------------------------------------------------------


def test_a_version_1_file_gets_states_derived_from_what_it_knew(tmp_path: Path) -> None:
    path = tmp_path / "v1.db"
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("CREATE TABLE schema_version (version INTEGER PRIMARY KEY, applied_at TEXT)")
    for statement in MIGRATIONS[0]:
        conn.execute(statement)
    conn.execute("INSERT INTO schema_version VALUES (1, '2026-01-01T00:00:00.000000Z')")
    conn.execute("INSERT INTO services VALUES ('web', 'blue', '2026-01-01T00:00:00.000000Z')")
    t1, t2 = "2026-01-01T01:00:00.000000Z", "2026-01-01T02:00:00.000000Z"
    rows = [  # (service, side, patch_level, patched_at, verified_at, ok, verified_level)
        ("web", "blue", None, None, None, None, None),  # untouched
        ("web", "green", "v2", t1, t2, 1, "v2"),  # verified after its patch
        ("api", "blue", "v2", t2, t1, 1, "v1"),  # verified before its last patch: patched
        ("api", "green", "v2", t1, t2, 0, "v2"),  # failed
    ]
    conn.execute("INSERT INTO services VALUES ('api', 'blue', '2026-01-01T00:00:00.000000Z')")
    conn.executemany("INSERT INTO sides VALUES (?, ?, ?, ?, ?, ?, ?, NULL)", rows)
    conn.close()
    with SQLiteStateStore(path) as store:
        states = {
            (svc, side): store.get_side(svc, side).state  # type: ignore[union-attr]
            for svc in ("web", "api")
            for side in ("blue", "green")
        }
        assert states == {
            ("web", "blue"): "untouched",
            ("web", "green"): "verified",
            ("api", "blue"): "patched",
            ("api", "green"): "verify_failed",
        }
        green = store.get_side("web", "green")
        assert green is not None and green.verified_after_patch and green.generation == 0
        svc = store.get_service("web")
        assert svc is not None and svc.live_side == "blue" and svc.rollback_to is None
        assert svc.pending_flip is None and svc.flip_problem is None


# -- side states -----------------------------------------------------------------------------


def test_patch_verify_lifecycle_counts_generations(store: StateStore) -> None:
    live(store)
    side = store.begin_patch("web", "green", "v2", audit=ENTRY)
    assert (side.state, side.patch_level, side.generation) == ("patching", "v2", 1)
    assert not side.verified_after_patch
    side = store.record_patch("web", "green", "v2", expected_generation=1, audit=ENTRY)
    assert (side.state, side.generation) == ("patched", 2)
    side = store.record_verification(
        "web", "green", True, "v2", "9 passed", audit=ENTRY,
        hosts={"g1": "m=1,b=2,d=3"}, expected_generation=2,
    )
    assert (side.state, side.generation, side.hosts) == ("verified", 3, {"g1": "m=1,b=2,d=3"})
    assert side.verified_after_patch and side.state_reason == "9 passed"
    again = store.begin_patch("web", "green", "v3", audit=ENTRY)
    assert again.state == "patching" and again.hosts == {} and not again.verified_after_patch


def test_the_live_side_is_never_patched(store: StateStore) -> None:
    live(store, "green")
    before = len(store.audit_records())
    with pytest.raises(StateError, match="live side"):
        store.begin_patch("web", "green", "v2", audit=ENTRY)
    assert store.get_side("web", "green") is None
    assert len(store.audit_records()) == before


def test_a_verification_that_outlived_a_change_is_not_recorded(store: StateStore) -> None:
    live(store)
    patched(store, "web", "green", "v2", audit=ENTRY)
    began = store.get_side("web", "green")
    assert began is not None
    store.begin_patch("web", "green", "v3", audit=ENTRY)  # a rollout started meanwhile
    with pytest.raises(StateError, match="changed during the verification"):
        store.record_verification(
            "web", "green", True, "v2", "ok", audit=ENTRY, expected_generation=began.generation
        )
    side = store.get_side("web", "green")
    assert side is not None and side.state == "patching" and side.verified_at is None


@pytest.mark.parametrize("state", ["patching", "failed_live", "quarantined"])
def test_verification_never_clears_a_state_that_needs_a_new_patch(
    store: StateStore, state: str
) -> None:
    live(store)
    if state == "patching":
        store.begin_patch("web", "green", "v2", audit=ENTRY)
    elif state == "quarantined":
        store.quarantine("web", "green", "test", audit=ENTRY)
    else:  # traffic was taken away from green by a rollback
        store.record_flip("web", "blue", "green", rollback=False, problem=None, audit=ENTRY)
        store.record_flip("web", "green", "blue", rollback=True, problem=None, audit=ENTRY)
    side = store.record_verification("web", "green", True, None, "all passed", audit=ENTRY)
    assert side.state == state and side.verification_ok is True
    assert not side.verified_after_patch


def test_failed_then_passing_verification(store: StateStore) -> None:
    live(store)
    patched(store, "web", "green", "v2", audit=ENTRY)
    failed = store.record_verification("web", "green", False, "v2", "1 failed", audit=ENTRY,
                                       hosts={"g1": "x"})
    assert failed.state == "verify_failed" and failed.hosts == {}
    passed = store.record_verification("web", "green", True, "v2", "ok", audit=ENTRY)
    assert passed.state == "verified" and passed.verified_after_patch


def test_untouched_forgets_patch_verification_and_hosts(store: StateStore) -> None:
    live(store)
    patched(store, "web", "green", "v2", audit=ENTRY)
    store.record_verification("web", "green", True, "v2", "ok", audit=ENTRY, hosts={"g": "f"})
    store.reset_service("web", "blue", ["green"], "re-imaged", audit=ENTRY)
    side = store.get_side("web", "green")
    assert side is not None
    assert side.state == "untouched" and side.state_reason == "re-imaged"
    assert (side.patch_level, side.verified_at, side.verification_ok, side.hosts) == (
        None, None, None, {})
    assert store.audit_records()[-1].before["live_side"] == "blue"


# -- flips ----------------------------------------------------------------------------------


def test_forward_flip_then_rollback(store: StateStore) -> None:
    live(store)
    pending = store.begin_flip("web", "blue", "green", command="flip", actor="bob", reason="CHG-1")
    svc = store.get_service("web")
    assert svc is not None and svc.pending_flip == pending and svc.live_side == "blue"
    begin = store.audit_records()[-1]
    assert (begin.command, begin.result, begin.after["target"]) == ("flip.begin", "started", "green")
    svc = store.record_flip("web", "blue", "green", rollback=False, problem=None, audit=ENTRY)
    assert (svc.live_side, svc.rollback_to, svc.pending_flip) == ("green", "blue", None)
    store.begin_flip("web", "green", "blue", command="rollback", actor="bob", reason="INC-1",
                     rollback=True)
    svc = store.record_flip("web", "green", "blue", rollback=True, problem=None, audit=ENTRY)
    assert (svc.live_side, svc.rollback_to) == ("blue", "blue")  # a rollback keeps it
    left = store.get_side("web", "green")
    assert left is not None and left.state == "failed_live" and "rolled back" in str(
        left.state_reason)
    assert store.verify_audit().ok


def test_begin_flip_refusals_change_nothing(store: StateStore) -> None:
    live(store)
    with pytest.raises(StateError, match="records blue as live"):
        store.begin_flip("web", "green", "blue", command="flip", actor="a", reason="r")
    patched(store, "web", "green", "v2", audit=ENTRY)
    gen = store.get_side("web", "green").generation  # type: ignore[union-attr]
    store.begin_patch("web", "green", "v3", audit=ENTRY)  # changed after the gate read it
    with pytest.raises(StateError, match="changed while the flip was being checked"):
        store.begin_flip("web", "blue", "green", command="flip", actor="a", reason="r",
                         expected_generation=gen)
    store.begin_flip("web", "blue", "green", command="flip", actor="a", reason="r")
    with pytest.raises(StateError, match="another flip is pending"):
        store.begin_flip("web", "blue", "green", command="flip", actor="a", reason="r")
    with pytest.raises(StateError, match="in progress"):  # no patching the flip's target
        store.begin_patch("web", "green", "v4", audit=ENTRY)
    store.cancel_flip("web", "router unchanged", audit=ENTRY)
    svc = store.get_service("web")
    assert svc is not None and svc.pending_flip is None and svc.live_side == "blue"


def test_flip_problem_is_recorded_and_cleared(store: StateStore) -> None:
    live(store)
    store.begin_flip("web", "blue", "green", command="flip", actor="a", reason="r")
    svc = store.record_flip("web", "blue", "green", rollback=False,
                            problem="not persisted: disk full", audit=ENTRY)
    assert svc.flip_problem == "not persisted: disk full"
    assert store.set_flip_problem("web", None, audit=ENTRY).flip_problem is None


def test_reset_service_forgets_everything_about_reimaged_sides(store: StateStore) -> None:
    live(store)
    patched(store, "web", "green", "v2", audit=ENTRY)
    store.record_verification("web", "green", True, "v2", "ok", audit=ENTRY)
    store.begin_flip("web", "blue", "green", command="flip", actor="a", reason="r")
    store.record_flip("web", "blue", "green", rollback=False, problem=None, audit=ENTRY)
    svc = store.reset_service("web", "blue", ["green"], "lab reset", audit=ENTRY)
    assert (svc.live_side, svc.rollback_to, svc.pending_flip) == ("blue", None, None)
    green = store.get_side("web", "green")
    assert green is not None and green.state == "untouched" and green.patch_level is None
    record = store.audit_records()[-1]
    assert record.before["live_side"] == "green" and record.after["sides"] == {
        "green": "untouched"}


# -- the traffic lock --------------------------------------------------------------------------


def test_traffic_lock_serializes_one_service_and_names_the_holder(
    store: StateStore,
) -> None:
    with store.traffic_lock("web", command="rollback"):
        with pytest.raises(LockHeld) as caught:
            with store.traffic_lock("web", timeout_s=0.1, command="flip"):
                pass
        message = str(caught.value)
        assert "rollback" in message and str(os.getpid()) in message
        assert caught.value.exit_code == 5
        with store.traffic_lock("api", timeout_s=0.1):  # another service: never waits
            pass
    with store.traffic_lock("web", timeout_s=0.1):  # released
        pass


def test_sqlite_traffic_lock_files_are_private(tmp_path: Path) -> None:
    with SQLiteStateStore(tmp_path / "state" / "state.db") as store:
        with store.traffic_lock("web", timeout_s=0.1):
            pass
    lock_dir = store.path.parent / "locks"
    assert (lock_dir.stat().st_mode & 0o777) == 0o700
    assert ((lock_dir / "traffic-web.lock").stat().st_mode & 0o777) == 0o600


def test_traffic_lock_waits_for_a_short_holder(store: StateStore, opener: Opener) -> None:
    order: list[str] = []
    entered = threading.Event()

    def hold() -> None:
        other = opener()
        try:
            with other.traffic_lock("web"):
                entered.set()
                time.sleep(0.3)
                order.append("first")
        finally:
            other.close()

    worker = threading.Thread(target=hold)
    worker.start()
    assert entered.wait(5)
    with store.traffic_lock("web", timeout_s=5):
        order.append("second")
    worker.join()
    assert order == ["first", "second"]


def test_traffic_lock_of_a_killed_holder_is_free(store: StateStore, opener: Opener) -> None:
    code = (
        "import sys, time\n"
        + opener.subprocess_code()
        + "with s.traffic_lock('web', command='crash test'):\n"
        "    print('held', flush=True)\n"
        "    time.sleep(60)\n"
    )
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "held"
        with pytest.raises(LockHeld, match="crash test"):
            with store.traffic_lock("web", timeout_s=0.1):
                pass
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(10)
        # PostgreSQL ends the killed holder's session once it notices the closed socket:
        # a moment later on a busy machine (the lock wait covers it; a live holder never ends)
        with store.traffic_lock("web", timeout_s=30):
            pass
    finally:
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGKILL)
        proc.wait(10)


# -- fencing: every side write a compare-and-set on its generation (issue 20) --------------------


def test_a_quarantine_during_the_patch_stands_and_the_patch_is_not_recorded(
    store: StateStore,
) -> None:
    live(store)
    began = store.begin_patch("web", "green", "v2", audit=ENTRY)
    marked = store.quarantine("web", "green", "INC-7 forensics", audit=ENTRY)
    before = len(store.audit_records())
    with pytest.raises(SideChanged) as caught:
        store.record_patch("web", "green", "v2", expected_generation=began.generation,
                           audit=ENTRY)
    for part in ("during the patch", f"{began.generation} -> {marked.generation}",
                 "quarantined", "INC-7 forensics"):
        assert part in caught.value.message
    side = store.get_side("web", "green")
    assert side is not None and side.state == "quarantined" and side == marked
    assert len(store.audit_records()) == before
    # the documented way out: a patch begun after the quarantine, then a passing gate
    again = store.begin_patch("web", "green", "v3", audit=ENTRY)
    done = store.record_patch("web", "green", "v3", expected_generation=again.generation,
                              audit=ENTRY)
    ok = store.record_verification("web", "green", True, "v3", "ok", audit=ENTRY,
                                   expected_generation=done.generation)
    assert ok.state == "verified" and ok.verified_after_patch
    assert ok.generation == marked.generation + 3


def test_invalid_transitions_are_refused_and_change_nothing(store: StateStore) -> None:
    live(store)
    with pytest.raises(TransitionRefused, match="patch_done"):  # no patch was begun
        store.record_patch("web", "green", "v2", expected_generation=0, audit=ENTRY)
    with pytest.raises(TransitionRefused, match="live"):  # the flip away marks a live side
        store.quarantine("web", "blue", "INC-1", audit=ENTRY)
    assert store.get_side("web", "blue") is None
    side = store.get_side("web", "green")
    assert side is None or (side.state, side.generation) == ("untouched", 0)
    assert [r.command for r in store.audit_records()] == ["test"]  # the live side only


def test_the_flip_record_rechecks_the_target_and_carries_the_quarantine_mark(
    store: StateStore,
) -> None:
    live(store)
    side = patched(store, "web", "green", "v2", audit=ENTRY)
    side = store.record_verification("web", "green", True, "v2", "ok", audit=ENTRY)
    store.begin_flip("web", "blue", "green", command="quarantine", actor="a", reason="INC-2",
                     expected_generation=side.generation, quarantine="INC-2 root key")
    store.record_verification("web", "green", False, "v2", "1 failed", audit=ENTRY)
    with pytest.raises(SideChanged, match="during the flip"):
        store.record_flip("web", "blue", "green", rollback=False, problem=None, audit=ENTRY,
                          expected_generation=side.generation, quarantine="INC-2 root key")
    svc = store.get_service("web")
    assert svc is not None and svc.live_side == "blue" and svc.pending_flip is not None
    assert svc.pending_flip.quarantine == "INC-2 root key"  # what recovery records
    svc = store.record_flip("web", "blue", "green", rollback=False, problem=None, audit=ENTRY,
                            quarantine="INC-2 root key")
    blue = store.get_side("web", "blue")
    assert svc.live_side == "green" and blue is not None and blue.state == "quarantined"
    record = store.audit_records()[-1]
    assert record.after["live_side"] == "green" and record.after["blue_state"] == "quarantined"
    assert store.verify_audit().ok


def test_a_patch_that_changed_no_host_gives_the_side_back_what_it_had(store: StateStore) -> None:
    """`restore_untouched`: state, since, reason, level and host fingerprints as before the
    patch began; audited with why; refused once the side moved on (then it stands)."""
    live(store)
    done = patched(store, "web", "green", "v2", audit=ENTRY)
    prior = store.record_verification("web", "green", True, "v2", "ok", audit=ENTRY,
                                      hosts={"g1": "fp"}, expected_generation=done.generation)
    began = store.begin_patch("web", "green", "v3", audit=ENTRY)
    assert began.state == "patching" and began.hosts == {}
    back = store.restore_untouched("web", "green", prior, "g1: sudo refused",
                                   expected_generation=began.generation, audit=ENTRY)
    assert (back.state, back.state_since, back.state_reason) == (
        prior.state, prior.state_since, prior.state_reason)
    assert (back.patch_level, back.hosts, back.verified_after_patch) == ("v2", {"g1": "fp"},
                                                                        True)
    assert back.generation == began.generation + 1
    record = store.audit_records("web")[-1]
    assert record.after["event"] == "patch_untouched" and record.after["state"] == "verified"
    assert record.before["state"] == "patching"
    # a side with no row before the patch: untouched again
    assert store.get_side("api", "green") is None
    fresh = store.begin_patch("api", "green", "v4", audit=ENTRY)
    again = store.restore_untouched("api", "green", None, "why",
                                    expected_generation=fresh.generation, audit=ENTRY)
    assert again.state == "untouched" and again.patch_level is None
    # moved on meanwhile (quarantined): refused, the quarantine stands
    began = store.begin_patch("web", "green", "v5", audit=ENTRY)
    store.quarantine("web", "green", "INC-9", audit=ENTRY)
    with pytest.raises(SideChanged, match="during the patch"):
        store.restore_untouched("web", "green", prior, "why",
                                expected_generation=began.generation, audit=ENTRY)
    side = store.get_side("web", "green")
    assert side is not None and side.state == "quarantined"
