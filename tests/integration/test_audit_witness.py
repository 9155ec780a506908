"""The audit head witnessed outside the store, against a real SQLite file and a real syslog
collector (rsyslogd over TCP, RFC 5424) plus an append-only file: what only a witness can
show (the newest records deleted with the head rewritten, an older copy of the database, a
chain rewritten) is detected and named; a witness that is down is reported, quickly."""

from __future__ import annotations

import shutil
import socket
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from orchestrator.state import AuditEntryInput, ChainReport, SQLiteStateStore
from orchestrator.state.audit import AuditHead
from orchestrator.state.audit_settings import WitnessSettings
from orchestrator.state.witness import (
    parse_expected_head,
    publish,
    read_witnessed,
)
from tests.support.sshd_fixture import free_port
from tests.support.syslog_fixture import SyslogCollector, syslog_collector


@pytest.fixture(scope="module")
def collector(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SyslogCollector]:
    with syslog_collector(tmp_path_factory.mktemp("syslog")) as running:
        yield running


def command(store_path: Path, settings: WitnessSettings, *names: str) -> None:
    """One bluegreen command: append records, then witness the head (as the CLI does)."""
    with SQLiteStateStore(store_path) as store:
        for name in names:
            store.audit_append(AuditEntryInput(actor="alice", command=name))
        assert store.appended is not None
        results = publish(store.appended, store_path, settings)
    assert all(r.ok for r in results), results


def verify(store_path: Path, settings: WitnessSettings, *, collector_only: bool = False,
           ) -> ChainReport:
    if collector_only:
        settings = WitnessSettings(syslog=settings.syslog, syslog_copy=settings.syslog_copy)
    with SQLiteStateStore(store_path) as store:
        key = store.verify_audit().key_id
        seen = read_witnessed(settings, store_path, key)
        return store.verify_audit(seen.heads, seen.sources)


def settled(collector: SyslogCollector, count: int) -> None:
    collector.wait_for(f"seq={count} ")


@pytest.fixture
def chain(tmp_path: Path, collector: SyslogCollector) -> tuple[Path, WitnessSettings]:
    path = tmp_path / "state" / "state.db"
    settings = WitnessSettings(syslog=collector.address, syslog_copy=collector.log,
                               file=tmp_path / "other-fs" / "witness.log")
    settings.file.parent.mkdir()  # type: ignore[union-attr]
    command(path, settings, "flip", "flip.done")  # head 2
    command(path, settings, "rollback.begin", "rollback")  # head 4
    command(path, settings, "run.create", "journal.begin", "journal.end")  # head 7
    settled(collector, 7)
    return path, settings


def test_intact_chain_agrees_with_both_witnesses(chain: tuple[Path, WitnessSettings],
                                                 collector: SyslogCollector) -> None:
    path, settings = chain
    report = verify(path, settings)
    assert report.ok, report.findings
    assert report.witness is not None and report.witness.seq == 7
    assert len(report.witness_sources) == 2 and report.warnings == ()
    line = collector.wait_for("seq=7 ")
    assert "bluegreen" in line and str(path) in line  # identifier and store, as sent
    assert (settings.file is not None
            and settings.file.read_text().count("audit head") == 3)  # appended, one a command


def test_truncation_with_a_rewritten_head_is_named(chain: tuple[Path, WitnessSettings]) -> None:
    path, settings = chain
    with SQLiteStateStore(path) as store:
        fifth = store.audit_records()[4]
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("DELETE FROM audit_log WHERE seq > 5")
    conn.execute("UPDATE audit_head SET count = 5, head_hash = ?", (fifth.hash,))
    conn.close()
    with SQLiteStateStore(path) as store:
        assert store.verify_audit().ok  # the store alone cannot tell
    for collector_only in (True, False):
        report = verify(path, settings, collector_only=collector_only)
        assert report.kind == "truncated", report.findings
        assert "head rewritten" in (report.problem or "")


def test_older_copy_of_the_database_is_named(chain: tuple[Path, WitnessSettings],
                                             collector: SyslogCollector,
                                             tmp_path: Path) -> None:
    path, settings = chain
    backup = tmp_path / "backup.db"
    src, dst = sqlite3.connect(path), sqlite3.connect(backup)
    src.backup(dst)
    src.close()
    dst.close()
    command(path, settings, "rollback")
    settled(collector, 8)
    shutil.copy(backup, path)
    for suffix in ("-wal", "-shm"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)
    report = verify(path, settings, collector_only=True)
    assert report.kind == "rolled_back", report.findings


def test_chain_rewritten_with_the_key_is_seen_by_the_witness(
    chain: tuple[Path, WitnessSettings],
) -> None:
    """Whoever holds the key can write a new, valid chain: only the witness shows it."""
    path, settings = chain
    for suffix in ("", "-wal", "-shm"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)  # the key file stays
    with SQLiteStateStore(path) as store:
        for name in ("flip", "flip.done", "rollback.begin", "rollback", "a", "b", "c", "d"):
            store.audit_append(AuditEntryInput(actor="mallory", command=name))
        assert store.verify_audit().ok  # valid on its own
    report = verify(path, settings)
    assert report.kind == "replaced", report.findings


def test_expected_head_from_an_auditor(chain: tuple[Path, WitnessSettings]) -> None:
    path, _ = chain
    with SQLiteStateStore(path) as store:
        third = store.audit_records()[2]
        ok = store.verify_audit([parse_expected_head(f"3:{third.hash}")])
        bad = store.verify_audit([parse_expected_head(f"3:{'0' * 64}")])
        ahead = store.verify_audit([parse_expected_head(f"9:{'0' * 64}")])
    assert ok.ok and bad.kind == "replaced" and ahead.kind == "truncated"
    with pytest.raises(ValueError, match="SEQ:HASH"):
        parse_expected_head("3:xyz")


def one_rollback(path: Path) -> AuditHead:
    with SQLiteStateStore(path) as store:
        store.audit_append(AuditEntryInput(actor="alice", command="rollback"))
        assert store.appended is not None
        return store.appended


def test_unreachable_collector_is_reported_fast_never_raised(tmp_path: Path) -> None:
    port = free_port()  # nothing listens there
    path = tmp_path / "state.db"
    head = one_rollback(path)
    started = time.monotonic()
    results = publish(head, path, WitnessSettings(syslog=f"tcp://127.0.0.1:{port}"))
    assert time.monotonic() - started < 1.0
    assert [r.ok for r in results] == [False]
    assert f"127.0.0.1:{port}" in (results[0].detail or "")
    # a local socket that does not exist (this machine kind has no /dev/log), and none at all
    local = publish(head, path, WitnessSettings(syslog="local"))
    assert not local[0].ok and "/dev/log" in (local[0].detail or "")
    none = publish(head, path, WitnessSettings(syslog="off"))
    assert not none[0].ok and "no witness" in (none[0].detail or "")


def test_blackholed_collector_waits_at_most_the_timeout(tmp_path: Path) -> None:
    """A collector that accepts nothing (listen backlog full) must not hold a rollback."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(0)
    port = server.getsockname()[1]
    fillers = []
    try:
        for _ in range(4):  # fill the accept queue so the next connect hangs
            filler = socket.socket()
            filler.setblocking(False)
            filler.connect_ex(("127.0.0.1", port))
            fillers.append(filler)
        path = tmp_path / "state.db"
        head = one_rollback(path)
        started = time.monotonic()
        publish(head, path, WitnessSettings(syslog=f"tcp://127.0.0.1:{port}", timeout_s=0.3))
        assert time.monotonic() - started < 1.5
    finally:
        for filler in fillers:
            filler.close()
        server.close()
