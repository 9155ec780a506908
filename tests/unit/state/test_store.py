"""SQLiteStateStore against real SQLite files: files, schema, records, journal, locks."""

from __future__ import annotations

import dataclasses
import os
import socket
import sqlite3
import stat
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from orchestrator.errors import BadInput, LockHeld, StateError
from orchestrator.state import (
    SCHEMA_VERSION,
    AuditEntryInput,
    LockHolder,
    SideState,
    SQLiteStateStore,
    StateStore,
)
from orchestrator.testing import FrozenClock, patched
from tests.unit.state.conftest import Opener

ENTRY = AuditEntryInput(actor="alice", command="test", reason="unit test")


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "state" / "bluegreen.db"


@pytest.fixture
def sqlite_store(db_path: Path) -> Iterator[SQLiteStateStore]:
    with SQLiteStateStore(db_path) as opened:
        yield opened


@pytest.fixture
def store(opener: Opener) -> Iterator[StateStore]:
    """A store of every backend (see conftest.py): the contract's tests."""
    opened = opener()
    try:
        yield opened
    finally:
        opened.close()


def raw(path: Path) -> sqlite3.Connection:
    return sqlite3.connect(path, isolation_level=None)


def mode(path: Path | str) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def commands(store: StateStore) -> list[str]:
    return [record.command for record in store.audit_records()]


# -- file, pragmas, schema ---------------------------------------------------------------


def test_files_are_private_even_with_a_permissive_umask(db_path: Path) -> None:
    old_umask = os.umask(0)
    try:
        with SQLiteStateStore(db_path) as store:
            store.set_live_side("web", "blue", audit=ENTRY)
            assert mode(db_path.parent) == 0o700
            assert mode(db_path) == 0o600
            for suffix in ("-wal", "-shm"):
                sidecar = f"{db_path}{suffix}"
                assert os.path.exists(sidecar), sidecar
                assert mode(sidecar) == 0o600, sidecar
    finally:
        os.umask(old_umask)


def test_opening_never_touches_the_process_umask(db_path: Path) -> None:
    """The umask is the whole process's: a parallel wave opens one store per thread while
    other threads create files, so opening must neither change it nor leave it changed."""
    import threading

    seen: list[int] = []
    stop = threading.Event()

    def watch() -> None:
        while not stop.is_set():
            current = os.umask(0o022)  # reading the umask means setting it: set it back
            os.umask(current)
            seen.append(current)

    old_umask = os.umask(0o022)
    watcher = threading.Thread(target=watch)
    watcher.start()
    try:
        for _ in range(20):
            with SQLiteStateStore(db_path) as store:
                store.get_service("web")
    finally:
        stop.set()
        watcher.join(10)
        os.umask(old_umask)
    assert not watcher.is_alive()
    assert seen and set(seen) == {0o022}, sorted(set(seen))


def test_wal_busy_timeout_and_foreign_keys(db_path: Path) -> None:
    with SQLiteStateStore(db_path, busy_timeout_ms=1234) as store:
        conn = store._conn  # the pragmas are per connection: look at the store's own
        assert conn.execute("PRAGMA busy_timeout").fetchone()[0] == 1234
        assert conn.execute("PRAGMA foreign_keys").fetchone()[0] == 1
    assert raw(db_path).execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_schema_version_is_recorded_and_reopen_keeps_data(db_path: Path) -> None:
    with SQLiteStateStore(db_path) as store:
        store.set_live_side("web", "green", audit=ENTRY)
    versions = raw(db_path).execute("SELECT version FROM schema_version").fetchall()
    assert versions == [(v,) for v in range(1, SCHEMA_VERSION + 1)] == [(1,), (2,), (3,), (4,), (5,), (6,), (7,), (8,)]
    with SQLiteStateStore(db_path) as store:
        service = store.get_service("web")
        assert service is not None and service.live_side == "green"
        assert store.verify_audit().ok


def test_newer_schema_is_refused_with_a_clear_message(db_path: Path) -> None:
    SQLiteStateStore(db_path).close()
    raw(db_path).execute("INSERT INTO schema_version VALUES (99, '2030-01-01T00:00:00Z')")
    with pytest.raises(StateError) as caught:
        SQLiteStateStore(db_path)
    assert "99" in str(caught.value)
    assert str(db_path) in str(caught.value)
    assert caught.value.hint and "upgrade" in caught.value.hint


def test_a_file_that_is_not_a_database_gives_state_error(db_path: Path) -> None:
    db_path.parent.mkdir(parents=True)
    db_path.write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(StateError) as caught:
        SQLiteStateStore(db_path)
    assert str(db_path) in str(caught.value)
    assert "fix:" in str(caught.value)


def test_write_under_an_exclusive_lock_raises_instead_of_hanging(db_path: Path) -> None:
    with SQLiteStateStore(db_path, busy_timeout_ms=100) as store:
        blocker = raw(db_path)
        blocker.execute("BEGIN EXCLUSIVE")
        try:
            started = time.monotonic()
            with pytest.raises(StateError) as caught:
                store.set_live_side("web", "blue", audit=ENTRY)
            assert time.monotonic() - started < 3
            assert "locked" in str(caught.value)
            assert str(db_path) in str(caught.value)
        finally:
            blocker.execute("ROLLBACK")
        # nothing half-written, and the store works again once the writer is gone
        assert store.get_service("web") is None
        assert store.audit_records() == []
        store.set_live_side("web", "blue", audit=ENTRY)
        assert commands(store) == ["test"]


# -- services, sides, atomicity ------------------------------------------------------------


def test_set_live_side_is_audited_with_before_and_after(store: StateStore) -> None:
    store.set_live_side("web", "blue", audit=ENTRY)
    store.set_live_side("web", "green", audit=ENTRY)
    service = store.get_service("web")
    assert service is not None and service.live_side == "green"
    assert service.updated_at.tzinfo is not None
    last = store.audit_records()[-1]
    assert (last.actor, last.service, last.reason) == ("alice", "web", "unit test")
    assert last.before == {"live_side": "blue"} and last.after == {"live_side": "green"}
    assert [s.service for s in store.list_services()] == ["web"]


def test_change_and_audit_commit_together_or_not_at_all(store: StateStore) -> None:
    wrong = AuditEntryInput(actor="alice", command="flip", service="db")
    with pytest.raises(ValueError):  # the audit step fails after the state row was written
        store.set_live_side("web", "blue", audit=wrong)
    assert store.get_service("web") is None
    assert store.audit_records() == []


def test_patch_then_verification_then_repatch(store: StateStore) -> None:
    level = "demo-web=1.0.1,demo-openssl=3.0.15-1"
    patched(store, "web", "green", level, audit=ENTRY)
    side = store.record_verification("web", "green", True, level, "12 passed", audit=ENTRY)
    assert side.verified_after_patch
    assert store.get_side("web", "green") == side
    assert store.get_side("web", "blue") is None
    repatched = patched(store, "web", "green", "demo-web=1.0.2", audit=ENTRY)
    assert repatched.verification_ok is True and not repatched.verified_after_patch
    assert commands(store) == ["test"] * 5  # begun, patched, verified, begun, patched
    assert store.audit_records()[-2].before["patch_level"] == level  # the begin of the patch


def test_failed_verification_is_not_verified(store: StateStore) -> None:
    patched(store, "web", "green", "v2", audit=ENTRY)
    side = store.record_verification("web", "green", False, "v2", "1 failed", audit=ENTRY)
    assert side.verification_ok is False and not side.verified_after_patch


def test_verified_after_patch_rules() -> None:
    t0 = datetime(2026, 11, 1, 12, tzinfo=UTC)
    good = SideState(
        service="web",
        side="green",
        patch_level="v2",
        patched_at=t0,
        verified_at=t0 + timedelta(seconds=5),
        verification_ok=True,
        verified_patch_level="v2",
        state="verified",
    )
    assert good.verified_after_patch
    for state in ("untouched", "patching", "patched", "verify_failed", "failed_live"):
        assert not dataclasses.replace(good, state=state).verified_after_patch, state
    # ordered by the state machine, not by clocks: a verifier whose clock is behind the
    # patcher's (another machine, a clock stepped back) still counts (issue 20, item 13)
    assert dataclasses.replace(good, verified_at=t0 - timedelta(hours=1)).verified_after_patch
    assert not dataclasses.replace(good, verified_patch_level="v1").verified_after_patch
    assert not dataclasses.replace(good, verification_ok=None).verified_after_patch
    assert not dataclasses.replace(good, verified_at=None).verified_after_patch
    assert dataclasses.replace(good, patched_at=None).verified_after_patch


def test_naive_timestamps_are_rejected() -> None:
    with pytest.raises(ValueError):
        SideState(service="web", side="blue", patched_at=datetime(2026, 1, 1))


# -- runs and journal ---------------------------------------------------------------------


def test_run_lifecycle_and_redacted_params(store: StateStore) -> None:
    run = store.create_run("r1", "rollout", "web", {"vault_password": "hunter2", "n": 2}, "alice")
    assert run.status == "running" and run.params == {"vault_password": "***", "n": 2}
    assert store.get_run("r1") == run
    assert store.latest_unfinished_run("web") == run
    with pytest.raises(StateError, match="already exists"):
        store.create_run("r1", "rollout", "web", {}, "alice")
    done = store.finish_run("r1", "done", "flipped to green")
    assert done.status == "done" and done.finished_at is not None
    assert store.get_run("r1") == done
    assert store.latest_unfinished_run("web") is None
    with pytest.raises(StateError, match="already ended"):
        store.finish_run("r1", "failed", None)
    store.create_run("r2", "rollout", "web", {}, "bob")
    store.create_run("c1", "campaign", None, {}, "bob")
    assert [r.run_id for r in store.list_runs(service="web")] == ["r1", "r2"]
    assert [r.run_id for r in store.list_runs(status="running")] == ["r2", "c1"]
    assert commands(store) == ["run.create", "run.finish", "run.create", "run.create"]
    assert "hunter2" not in repr(store.dump())  # every stored row, as the backend has it


def test_deferred_run_is_resumable(store: StateStore) -> None:
    store.create_run("r1", "rollout", "web", {}, "alice")
    store.finish_run("r1", "deferred", "window closed")
    resumable = store.latest_unfinished_run("web")
    assert resumable is not None and resumable.run_id == "r1"
    store.journal_begin("r1", "flip")
    assert store.finish_run("r1", "done", None).status == "done"


def test_journal_order_and_last_finished_step(store: StateStore) -> None:
    store.create_run("r1", "rollout", "web", {}, "alice")
    assert store.last_finished_step("r1") is None
    store.journal_begin("r1", "patch", {"hosts": ["g1", "g2"]})
    assert store.last_finished_step("r1") is None  # begun is not finished
    store.journal_end("r1", "patch", {"ok": True})
    store.journal_begin("r1", "verify")
    assert store.last_finished_step("r1") == "patch"
    entries = store.journal("r1")
    assert [(e.seq, e.step, e.phase) for e in entries] == [
        (1, "patch", "begin"),
        (2, "patch", "end"),
        (3, "verify", "begin"),
    ]
    assert entries[0].data == {"hosts": ["g1", "g2"]}
    assert entries[0].at <= entries[1].at <= entries[2].at
    journal_audit = [r for r in store.audit_records() if r.command.startswith("journal.")]
    assert [r.after["step"] for r in journal_audit] == ["patch", "patch", "verify"]
    assert all(r.actor == "alice" and r.service == "web" for r in journal_audit)


def test_journal_end_needs_a_begun_step_and_a_live_run(store: StateStore) -> None:
    store.create_run("r1", "rollout", "web", {}, "alice")
    before = len(store.audit_records())
    with pytest.raises(StateError, match="not begun"):
        store.journal_end("r1", "flip")
    with pytest.raises(StateError, match="does not exist"):
        store.journal_begin("nope", "flip")
    store.finish_run("r1", "failed", "boom")
    with pytest.raises(StateError, match="already ended"):
        store.journal_begin("r1", "flip")
    assert len(store.audit_records()) == before + 1  # only the finish


# -- locks ----------------------------------------------------------------------------------


def dead_pid() -> int:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def test_lock_conflict_names_the_holder_and_the_fix(store: StateStore) -> None:
    holder = LockHolder(holder="carol@lb-admin", pid=os.getpid(), hostname=socket.gethostname())
    lock = store.acquire_lock("web", "run-1", holder)
    assert store.get_lock("web") == lock
    with pytest.raises(LockHeld) as caught:
        store.acquire_lock("web", "run-2")
    message = str(caught.value)
    for part in ("carol@lb-admin", str(os.getpid()), "run-1", "since", "unlock web"):
        assert part in message, part
    assert caught.value.exit_code == 5


def test_same_run_reacquires_and_release_rules(store: StateStore) -> None:
    lock = store.acquire_lock("web", "run-1")
    assert store.acquire_lock("web", "run-1") == lock
    with pytest.raises(LockHeld):
        store.release_lock("web", "run-2")
    assert store.release_lock("web", "run-1") is True
    assert store.release_lock("web", "run-1") is False
    assert store.get_lock("web") is None
    assert commands(store) == ["lock.acquire", "lock.release"]


def test_stale_lock_of_a_dead_local_process_is_taken_over(sqlite_store: SQLiteStateStore) -> None:
    pid = dead_pid()
    ghost = LockHolder(holder="dave@here", pid=pid, hostname=socket.gethostname())
    sqlite_store.acquire_lock("web", "run-1", ghost)
    lock = sqlite_store.acquire_lock("web", "run-2")
    assert (lock.run_id, lock.pid) == ("run-2", os.getpid())
    takeover = sqlite_store.audit_records()[-1]
    assert takeover.command == "lock.takeover"
    assert takeover.before["pid"] == pid and takeover.after["run_id"] == "run-2"
    assert takeover.reason is not None and str(pid) in takeover.reason


def test_dead_pid_on_another_host_is_not_taken_over(sqlite_store: SQLiteStateStore) -> None:
    remote = LockHolder(holder="erin@other", pid=dead_pid(), hostname="other-host.invalid")
    sqlite_store.acquire_lock("web", "run-1", remote)
    with pytest.raises(LockHeld, match="erin@other"):
        sqlite_store.acquire_lock("web", "run-2")


def test_force_release_is_audited_with_reason(store: StateStore) -> None:
    store.acquire_lock("web", "run-1")
    with pytest.raises(BadInput):
        store.force_release_lock("web", " ", "oncall")
    removed = store.force_release_lock("web", "INC-4711 stuck run", "oncall")
    assert removed is not None and removed.run_id == "run-1"
    assert store.get_lock("web") is None
    record = store.audit_records()[-1]
    assert (record.command, record.actor, record.reason) == (
        "lock.force_release",
        "oncall",
        "INC-4711 stuck run",
    )
    assert record.before["run_id"] == "run-1"
    assert store.force_release_lock("web", "again", "oncall") is None
    assert store.audit_records()[-1].result == "no lock"


def test_a_verification_stamped_before_the_patch_by_a_slow_clock_still_counts(
    opener: Opener,
) -> None:
    """Two machines: the patcher's clock is an hour ahead of the verifier's. The store's
    order (generations) decides, not the timestamps (issue 20, item 13)."""
    clock = FrozenClock(datetime(2026, 12, 7, 13, tzinfo=UTC))  # the patcher's clock
    store = opener(clock=clock)
    try:
        side = patched(store, "web", "green", "v2", audit=ENTRY)
        clock.now -= timedelta(hours=1)  # the verifier's clock is an hour behind
        side = store.record_verification("web", "green", True, "v2", "ok", audit=ENTRY,
                                         expected_generation=side.generation)
        assert side.verified_at is not None and side.patched_at is not None
        assert side.verified_at < side.patched_at
        assert side.state == "verified" and side.verified_after_patch
    finally:
        store.close()
