"""The audit hash chain: it verifies, and every kind of tampering breaks it. Redaction."""

from __future__ import annotations

import dataclasses
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest

from orchestrator.errors import AuditBroken
from orchestrator.state import AuditEntryInput, SQLiteStateStore, verify_chain
from orchestrator.state.audit import GENESIS_HASH, canonical_json, format_ts, record_hash


@pytest.fixture
def store(tmp_path: Path) -> Iterator[SQLiteStateStore]:
    with SQLiteStateStore(tmp_path / "state.db") as opened:
        for number in range(1, 6):
            opened.audit_append(
                AuditEntryInput(
                    actor="alice",
                    command=f"cmd-{number}",
                    service="web" if number % 2 else "db",
                    after={"n": number},
                )
            )
        yield opened


def tamper(store: SQLiteStateStore, *statements: str) -> None:
    """Edit the file behind the store's back, as someone with write access could."""
    conn = sqlite3.connect(store.path, isolation_level=None)
    try:
        for statement in statements:
            conn.execute(statement)
    finally:
        conn.close()


def insert_forged(store: SQLiteStateStore, seq: int, prev_hash: str) -> None:
    """Insert a record whose own hash is correct (the forger knows the algorithm)."""
    forged = dataclasses.replace(store.audit_records()[0], seq=seq, actor="mallory", command="forged", prev_hash=prev_hash)
    forged = dataclasses.replace(forged, hash=record_hash(forged))
    conn = sqlite3.connect(store.path, isolation_level=None)
    try:
        conn.execute(
            "INSERT INTO audit_log VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                forged.seq,
                format_ts(forged.at),
                forged.actor,
                forged.command,
                forged.service,
                forged.reason,
                canonical_json(forged.before),
                canonical_json(forged.after),
                forged.result,
                forged.prev_hash,
                forged.hash,
            ),
        )
    finally:
        conn.close()


def test_intact_chain_verifies(store: SQLiteStateStore) -> None:
    records = store.audit_records()
    report = store.verify_audit()
    assert report.ok and report.problem is None and report.bad_seq is None
    assert report.count == 5 and report.head_hash == records[-1].hash
    assert records[0].prev_hash == GENESIS_HASH
    assert [r.prev_hash for r in records[1:]] == [r.hash for r in records[:-1]]
    assert all(r.hash == record_hash(r) for r in records)


def test_empty_chain_verifies(tmp_path: Path) -> None:
    with SQLiteStateStore(tmp_path / "empty.db") as empty:
        report = empty.verify_audit()
    assert report.ok and report.count == 0 and report.head_hash == GENESIS_HASH


def test_hash_covers_every_field_but_hash(store: SQLiteStateStore) -> None:
    record = store.audit_records()[2]
    for field, value in [
        ("seq", 99),
        ("actor", "bob"),
        ("command", "x"),
        ("service", None),
        ("reason", "r"),
        ("before", {"a": 1}),
        ("after", {}),
        ("result", "failed"),
        ("prev_hash", GENESIS_HASH),
    ]:
        assert record_hash(dataclasses.replace(record, **{field: value})) != record.hash, field
    assert record_hash(dataclasses.replace(record, hash="x")) == record.hash


def test_edited_record_is_detected(store: SQLiteStateStore) -> None:
    tamper(store, "UPDATE audit_log SET actor = 'mallory' WHERE seq = 3")
    report = store.verify_audit()
    assert not report.ok and report.bad_seq == 3
    assert report.problem is not None and "modified" in report.problem


def test_edit_with_recomputed_hash_breaks_the_next_link(store: SQLiteStateStore) -> None:
    edited = dataclasses.replace(store.audit_records()[2], actor="mallory")
    new_hash = record_hash(edited)
    tamper(store, f"UPDATE audit_log SET actor = 'mallory', hash = '{new_hash}' WHERE seq = 3")
    report = store.verify_audit()
    assert not report.ok and report.bad_seq == 4
    assert report.problem is not None and "prev_hash" in report.problem


def test_deleted_middle_record_is_detected(store: SQLiteStateStore) -> None:
    tamper(store, "DELETE FROM audit_log WHERE seq = 2")
    report = store.verify_audit()
    assert not report.ok and report.bad_seq == 3


def test_deleted_last_record_is_detected_by_the_head(store: SQLiteStateStore) -> None:
    tamper(store, "DELETE FROM audit_log WHERE seq = 5")
    report = store.verify_audit()
    assert not report.ok and report.bad_seq == 5
    assert report.problem is not None and "head" in report.problem


def test_deleted_last_record_stays_detected_after_new_writes(store: SQLiteStateStore) -> None:
    tamper(store, "DELETE FROM audit_log WHERE seq = 5")
    store.audit_append(AuditEntryInput(actor="alice", command="later"))
    report = store.verify_audit()
    assert not report.ok and report.bad_seq == 6  # the gap is not papered over


def test_forged_record_appended_is_detected(store: SQLiteStateStore) -> None:
    head = store.audit_records()[-1].hash
    insert_forged(store, 6, head)
    report = store.verify_audit()
    assert not report.ok and report.problem is not None and "head" in report.problem
    with pytest.raises(AuditBroken):  # the store refuses to build on a forged chain
        store.audit_append(AuditEntryInput(actor="alice", command="later"))
    assert store.audit_records()[-1].command == "forged"


def test_forged_record_inserted_in_the_middle_is_detected(store: SQLiteStateStore) -> None:
    records = store.audit_records()
    shifts = [f"UPDATE audit_log SET seq = {seq + 1} WHERE seq = {seq}" for seq in (5, 4, 3)]
    tamper(store, *shifts)
    insert_forged(store, 3, records[1].hash)
    report = store.verify_audit()
    assert not report.ok and report.bad_seq == 4  # the moved original no longer fits


def test_swapped_records_are_detected(store: SQLiteStateStore) -> None:
    tamper(
        store,
        "UPDATE audit_log SET seq = -1 WHERE seq = 2",
        "UPDATE audit_log SET seq = 2 WHERE seq = 3",
        "UPDATE audit_log SET seq = 3 WHERE seq = -1",
    )
    report = store.verify_audit()
    assert not report.ok and report.bad_seq == 2


def test_reordered_list_is_detected_by_verify_chain(store: SQLiteStateStore) -> None:
    records = store.audit_records()
    assert verify_chain(records).ok
    reordered = [records[0], records[2], records[1], *records[3:]]
    report = verify_chain(reordered)
    assert not report.ok and report.bad_seq == 3


def test_unreadable_record_is_reported_not_raised(store: SQLiteStateStore) -> None:
    tamper(store, "UPDATE audit_log SET at = 'yesterday' WHERE seq = 4")
    report = store.verify_audit()
    assert not report.ok and report.bad_seq == 4 and report.count == 3


def test_audit_records_filter_and_limit(store: SQLiteStateStore) -> None:
    assert [r.seq for r in store.audit_records(service="web")] == [1, 3, 5]
    assert [r.seq for r in store.audit_records(limit=2)] == [4, 5]
    assert [r.seq for r in store.audit_records(service="db", limit=1)] == [4]


def test_audit_before_and_after_are_redacted_in_the_file(tmp_path: Path) -> None:
    with SQLiteStateStore(tmp_path / "state.db") as store:
        entry = AuditEntryInput(
            actor="alice",
            command="flip",
            before={"db": {"password": "hunter2"}},
            after={"token": "s3cr3t-value", "side": "green"},
        )
        record = store.audit_append(entry)
        assert record.before == {"db": {"password": "***"}}
        assert record.after == {"token": "***", "side": "green"}
        assert store.verify_audit().ok
        dump = "\n".join(sqlite3.connect(store.path).iterdump())
    assert "hunter2" not in dump and "s3cr3t-value" not in dump
