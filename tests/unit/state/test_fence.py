"""Run epochs (fencing tokens) on every backend: handed out with each lock, recorded with
the run, checked in the same transaction as every write a run makes; a takeover abandons
the stale run; a lock is freed only when its holder is gone; old stores migrate."""

from __future__ import annotations

import os
import socket
import sqlite3
from pathlib import Path

import psycopg
import pytest

from orchestrator.errors import Fenced, LockHeld
from orchestrator.state import AuditEntryInput, LockHolder, SQLiteStateStore, StateStore
from orchestrator.state.postgresql.schema import MIGRATIONS as PG_MIGRATIONS
from orchestrator.state.registry import backend, parse_state_url
from orchestrator.state.sqlite.schema import MIGRATIONS
from tests.support import postgres
from tests.unit.state.conftest import Opener
from tests.unit.state.test_store import dead_pid

ENTRY = AuditEntryInput(actor="alice", command="test", reason="unit test")


def ghost() -> LockHolder:
    """A holder on this host whose process is gone (provably)."""
    return LockHolder(holder="dave@here", pid=dead_pid(), hostname=socket.gethostname())


def started(store: StateStore, run_id: str, holder: LockHolder | None = None) -> int:
    epoch = store.acquire_lock("web", run_id, holder).epoch
    store.create_run(run_id, "rollout", "web", {}, "alice")
    return epoch


def test_epochs_grow_per_lock_and_the_run_records_its_own(opener: Opener) -> None:
    first, second = opener(), opener()
    try:
        assert started(first, "run-1") == 1
        assert first.get_run("run-1").epoch == 1  # type: ignore[union-attr]
        first.journal_begin("run-1", "precheck")
        first.finish_run("run-1", "done", "ok")
        assert first.release_lock("web", "run-1")
        assert started(second, "run-2") == 2
        assert second.acquire_lock("web", "run-2").epoch == 2  # re-acquiring keeps it
        assert second.acquire_lock("api", "run-3").epoch == 1  # per lock
        assert second.fence_of("run-2") == ("web", 2)
        assert first.fence_of("run-1") is None  # released
    finally:
        first.close()
        second.close()


def test_a_takeover_abandons_the_stale_run_and_refuses_its_late_writes(
    tmp_path: Path,
) -> None:
    path = tmp_path / "state.db"
    with SQLiteStateStore(path) as old, SQLiteStateStore(path) as new:
        assert started(old, "run-1", ghost()) == 1
        old.journal_begin("run-1", "patch")
        assert started(new, "run-2") == 2
        stale = new.get_run("run-1")
        assert stale is not None and stale.status == "abandoned"
        assert stale.result is not None and "run-2 took the lock over (epoch 2)" in stale.result
        assert [r.command for r in new.audit_records()][-3:] == [
            "lock.takeover", "run.abandon", "run.create"]
        count = new.audit_head().count
        with pytest.raises(Fenced, match=r"run run-1 .*already ended with status 'abandoned'"):
            old.journal_end("run-1", "patch", {"ok": True})
        with pytest.raises(Fenced):
            old.finish_run("run-1", "done", "late")
        assert new.audit_head().count == count  # nothing recorded
        assert new.get_lock("web").run_id == "run-2"  # type: ignore[union-attr]


def test_the_same_run_resumed_elsewhere_fences_the_old_process(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    with SQLiteStateStore(path) as old, SQLiteStateStore(path) as new:
        started(old, "run-1", ghost())
        assert new.acquire_lock("web", "run-1").epoch == 2  # `resume` takes over its own run
        run = new.get_run("run-1")
        assert run is not None and (run.status, run.epoch) == ("running", 2)
        with pytest.raises(Fenced, match=r"run run-1 \(epoch 1\) was superseded by run run-1 "
                           r"\(epoch 2\) at 20"):
            old.journal_begin("run-1", "flip")
        assert old.release_lock("web", "run-1") is False  # not the old process's to release
        assert new.get_lock("web") is not None
        new.journal_begin("run-1", "flip")


def test_a_lock_is_freed_only_when_its_holder_is_gone(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    with SQLiteStateStore(path) as holder, SQLiteStateStore(path) as operator:
        started(holder, "run-1")  # this process: alive
        for end_holder in (False, True):
            with pytest.raises(LockHeld, match="not gone"):
                operator.force_release_lock("web", "campaign abort", "oncall",
                                            end_holder=end_holder)
        assert operator.get_lock("web") is not None
        holder.journal_begin("run-1", "patch")  # still its owner


def test_unlock_of_a_holder_on_another_host_fences_it(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    remote = LockHolder(holder="erin@other", pid=4242, hostname="other-host.invalid")
    with SQLiteStateStore(path) as holder, SQLiteStateStore(path) as operator:
        started(holder, "run-1", remote)
        with pytest.raises(LockHeld):  # cannot be checked from here: not without unlock's word
            operator.force_release_lock("web", "campaign abort", "oncall")
        freed = operator.force_release_lock("web", "host died", "oncall", end_holder=True)
        assert freed is not None and freed.epoch == 1
        with pytest.raises(Fenced, match="no longer holds the lock of service web"):
            holder.journal_begin("run-1", "patch")
        operator.acquire_lock("web", "run-2")  # the next run: the freed one is abandoned
        run = operator.get_run("run-1")
        assert run is not None and run.status == "abandoned"
        assert run.result is not None and "freed while it was running" in run.result


def test_interleaved_starts_of_one_campaign_leave_one_run(opener: Opener) -> None:
    first, second = opener(), opener()
    try:
        for store, run_id in ((first, "c-1"), (second, "c-2")):
            store.acquire_lock("campaign:nightly", run_id)
            if run_id == "c-1":
                store.create_run(run_id, "campaign", None, {"name": "nightly"}, "timer",
                                 exclusive_of={"name": "nightly"})
                store.finish_run(run_id, "deferred", "window closed")
                store.release_lock("campaign:nightly", run_id)
        with pytest.raises(LockHeld, match="campaign name nightly already has an unfinished "
                           "run c-1 .deferred"):
            second.create_run("c-2", "campaign", None, {"name": "nightly"}, "operator",
                              exclusive_of={"name": "nightly"})
        assert [r.run_id for r in second.list_runs()] == ["c-1"]
        second.create_run("c-3", "campaign", None, {"name": "weekly"}, "operator",
                          exclusive_of={"name": "weekly"})
    finally:
        first.close()
        second.close()


def test_side_writes_and_flips_of_an_ended_or_superseded_run_are_refused(
    opener: Opener,
) -> None:
    """The sides' one write and a run's flip check the run's fence in their transaction:
    once someone else ended the run (abort) nothing it writes for the service counts."""
    run, operator = opener(), opener()
    try:
        operator.set_live_side("web", "blue", audit=ENTRY)
        started(run, "run-1")
        patching = run.begin_patch("web", "green", "v2", audit=ENTRY)  # its own: fine
        operator.finish_run("run-1", "aborted", "campaign abort by oncall")
        count = operator.audit_head().count
        with pytest.raises(Fenced, match=r"run run-1 \(epoch 1\) already ended \(aborted"):
            run.record_patch("web", "green", "v2", expected_generation=patching.generation,
                             audit=ENTRY)
        with pytest.raises(Fenced):
            run.begin_flip("web", "blue", "green", command="rollout.flip", actor="ci",
                           reason="run run-1", run_id="run-1")
        assert operator.audit_head().count == count  # nothing recorded
        side = operator.get_side("web", "green")
        assert side is not None and side.state == "patching"
        # another process's writes (an operator's) are no run's: not fenced
        operator.begin_patch("web", "green", "v3", audit=ENTRY)
    finally:
        run.close()
        operator.close()


# -- migration --------------------------------------------------------------------------------


def test_a_version_4_file_migrates_with_its_held_lock_at_epoch_1(tmp_path: Path) -> None:
    path = tmp_path / "v4.db"
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("CREATE TABLE schema_version (version INTEGER PRIMARY KEY, applied_at TEXT)")
    for version, statements in enumerate(MIGRATIONS[:4], start=1):
        for statement in statements:
            conn.execute(statement)
        conn.execute("INSERT INTO schema_version VALUES (?, '2026-01-01T00:00:00.000000Z')",
                     (version,))
    conn.execute("INSERT INTO runs (run_id, kind, service, status, params, actor, started_at)"
                 " VALUES ('run-1', 'rollout', 'web', 'running', '{}', 'alice',"
                 " '2026-01-01T00:00:00.000000Z')")
    conn.execute("INSERT INTO locks VALUES ('web', 'run-1', 'dave@here', ?, ?,"
                 " '2026-01-01T00:00:00.000000Z')", (dead_pid(), socket.gethostname()))
    conn.close()
    with SQLiteStateStore(path) as store:
        lock = store.get_lock("web")
        assert lock is not None and lock.epoch == 1
        run = store.get_run("run-1")
        assert run is not None and run.epoch is None
        assert store.acquire_lock("web", "run-2").epoch == 2  # the dead holder's, taken over
        assert store.get_run("run-1").status == "abandoned"  # type: ignore[union-attr]


def test_a_version_1_postgresql_database_migrates_to_epochs(tmp_path: Path) -> None:
    with postgres.throwaway_database() as url:
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute("CREATE TABLE schema_version (version INTEGER PRIMARY KEY, "
                         "applied_at TEXT NOT NULL)")
            for statement in PG_MIGRATIONS[0]:
                conn.execute(statement)
            conn.execute("INSERT INTO schema_version VALUES (1, '2026-01-01T00:00:00Z')")
            conn.execute("INSERT INTO locks VALUES ('web', 'run-1', 'dave@there', 7, 'there',"
                         " '2026-01-01T00:00:00.000000Z')")
        location = parse_state_url(url)
        assert backend(location).migrate(location, audit_key_file=tmp_path / "k") == (
            1, len(PG_MIGRATIONS))
        with psycopg.connect(url, autocommit=True) as conn:
            assert conn.execute("SELECT lock, epoch, run_id FROM epochs").fetchall() == [
                ("web", 1, "run-1")]
            assert conn.execute("SELECT epoch FROM locks").fetchall() == [(1,)]


# -- PostgreSQL: a session that ends takes the lock with it -----------------------------------


def test_a_terminated_session_records_nothing_and_is_taken_over(
    pg_database: str, tmp_path: Path
) -> None:
    postgres.empty_tables(pg_database)
    opener = Opener("postgresql", parse_state_url(pg_database), tmp_path / "audit.key")
    holder, other = opener(), opener()
    try:
        started(holder, "run-1")
        pid = holder._conn.raw.info.backend_pid  # type: ignore[attr-defined]
        with psycopg.connect(opener.location.url, autocommit=True) as admin:
            admin.execute("SELECT pg_terminate_backend(%s)", (pid,))
        with pytest.raises(Fenced, match=r"session holding the lock of web \(run run-1, epoch 1\)"
                           " ended"):
            holder.journal_begin("run-1", "flip")
        assert other.acquire_lock("web", "run-2").epoch == 2
        assert other.get_run("run-1").status == "abandoned"  # type: ignore[union-attr]
        assert other.verify_audit().ok
        assert os.getpid() == other.get_lock("web").pid  # type: ignore[union-attr]
    finally:
        holder.close()
        other.close()


# -- state copy -----------------------------------------------------------------------------


def test_state_copy_refuses_a_store_in_use_naming_each_thing(tmp_path: Path) -> None:
    from orchestrator.errors import StateError
    from orchestrator.state.copy import copy_store
    from orchestrator.state.registry import sqlite_location

    path, target = tmp_path / "src" / "state.db", tmp_path / "dst" / "state.db"
    key = tmp_path / "src" / "audit.key"
    with SQLiteStateStore(path) as store:
        store.set_live_side("api", "blue", audit=ENTRY)
        started(store, "run-1")  # running, its holder (this process) alive
        store.begin_flip("api", "blue", "green", command="flip", actor="alice", reason="x")
        with pytest.raises(StateError) as caught:
            copy_store(sqlite_location(path), sqlite_location(target), audit_key_file=key,
                       actor="alice")
    message = caught.value.message
    for part in ("in use; nothing was copied", "run run-1 (rollout of web) is running",
                 "api has a pending flip (flip blue -> green",
                 "web is locked by run run-1 (pid"):
        assert part in message, part
    assert not target.exists()  # nothing written
