"""The keyed audit chain against real SQLite files: it verifies, every kind of tampering is
detected and named, the key file is handled safely, old unkeyed chains are migrated."""

from __future__ import annotations

import dataclasses
import os
import shutil
import sqlite3
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from orchestrator.errors import AuditBroken, StateError
from orchestrator.state import (
    AuditEntryInput,
    AuditRecord,
    SQLiteStateStore,
    StateStore,
    WitnessHead,
    verify_chain,
)
from orchestrator.state.audit import (
    BOUNDARY_COMMAND,
    GENESIS_HASH,
    record_hash,
    record_mac,
)
from orchestrator.state.audit_key import load_key
from orchestrator.state.registry import sqlite_location
from orchestrator.state.sqlite.schema import MIGRATIONS
from tests.support.attacks import AUDIT_COLUMNS, audit_row
from tests.unit.state.conftest import Opener


def _five_records(opened: StateStore) -> None:
    for number in range(1, 6):
        opened.audit_append(
            AuditEntryInput(
                actor="alice",
                command=f"cmd-{number}",
                service="web" if number % 2 else "db",
                after={"n": number},
            )
        )


@pytest.fixture
def store(opener: Opener) -> Iterator[StateStore]:
    """Five records, in a store of every backend (see conftest.py)."""
    opened = opener()
    try:
        _five_records(opened)
        yield opened
    finally:
        opened.close()


@pytest.fixture
def sqlite_store(tmp_path: Path) -> Iterator[SQLiteStateStore]:
    """Five records in a SQLite file (for what only a file has: copies, its key beside it)."""
    with SQLiteStateStore(tmp_path / "state.db") as opened:
        _five_records(opened)
        yield opened


def tamper(path: Path, *statements: str, params: tuple[object, ...] = ()) -> None:
    """Edit the file behind the store's back, as someone with write access could."""
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        for statement in statements:
            conn.execute(statement, params) if params else conn.execute(statement)
    finally:
        conn.close()


_COLUMNS = AUDIT_COLUMNS
row_values = audit_row


def _editor(where: Opener | Path) -> Opener:
    """The store to edit: an opener, or a SQLite file (the unkeyed-chain tests' files)."""
    if not isinstance(where, Path):
        return where
    return Opener("sqlite", sqlite_location(where), where.with_name("audit.key"))


def put(where: Opener | Path, record: AuditRecord) -> None:
    """Write `record` at its seq (replacing what is there), as a forger would."""
    opener = _editor(where)
    opener.tamper(f"DELETE FROM audit_log WHERE seq = {record.seq}")
    opener.tamper(f"INSERT INTO audit_log ({_COLUMNS}) VALUES "
                  "(?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", params=row_values(record))


def set_head(where: Opener | Path, count: int, head_hash: str) -> None:
    _editor(where).tamper(f"UPDATE audit_head SET count = {count}, head_hash = '{head_hash}'")


def forge(record: AuditRecord, **changes: object) -> AuditRecord:
    """`record` changed, its hash recomputed, a MAC made up: all a forger without the key
    can do."""
    changed = dataclasses.replace(record, **changes)  # type: ignore[arg-type]
    return dataclasses.replace(changed, hash=record_hash(changed), mac="0" * 64)


def kinds(store: StateStore, *witnesses: WitnessHead) -> list[str]:
    return [f.kind for f in store.verify_audit(witnesses).findings]


# -- an intact chain ---------------------------------------------------------------------


def test_intact_chain_verifies_with_key_and_identity(store: StateStore) -> None:
    records = store.audit_records()
    report = store.verify_audit()
    assert report.ok and report.findings == () and report.problem is None
    assert report.count == 5 and report.head_hash == records[-1].hash
    assert report.macs_checked and report.keyed_from == 1 and report.unkeyed == 0
    assert records[0].prev_hash == GENESIS_HASH
    assert [r.prev_hash for r in records[1:]] == [r.hash for r in records[:-1]]
    key = load_key(store.audit_key_file, create=False)
    assert key is not None
    for r in records:
        assert r.hash == record_hash(r) and r.mac == record_mac(key.secret, r)
        assert r.key_id == key.key_id and r.os_uid == os.getuid() and r.os_user
        assert r.hostname and r.identity is not None
    # no witness given: said loudly, not a silent pass
    assert any("no witnessed head" in w for w in report.warnings)


def test_empty_chain_verifies(tmp_path: Path) -> None:
    with SQLiteStateStore(tmp_path / "empty.db") as empty:
        report = empty.verify_audit()
        assert report.ok and report.count == 0 and report.head_hash == GENESIS_HASH
    assert not (tmp_path / "audit.key").exists()  # reading never creates a key


def test_hash_and_mac_cover_every_field(store: StateStore) -> None:
    record = store.audit_records()[2]
    key = load_key(store.audit_key_file, create=False)
    assert key is not None
    for field, value in [("seq", 99), ("actor", "bob"), ("command", "x"), ("service", None),
                         ("reason", "r"), ("before", {"a": 1}), ("after", {}),
                         ("result", "failed"), ("prev_hash", GENESIS_HASH), ("os_uid", 4242),
                         ("os_user", "eve"), ("sudo_user", "eve"), ("hostname", "elsewhere"),
                         ("key_id", "f" * 16)]:
        changed = dataclasses.replace(record, **{field: value})  # type: ignore[arg-type]
        assert record_hash(changed) != record.hash, field
        assert record_mac(key.secret, changed) != record.mac, field
    assert record_hash(dataclasses.replace(record, hash="x", mac="y")) == record.hash
    assert record_mac(b"\x01" * 32, record) != record.mac


def test_records_written_by_sudo_keep_the_sudo_user(tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SUDO_USER", "carol")
    with SQLiteStateStore(tmp_path / "state.db") as fresh:
        record = fresh.audit_append(AuditEntryInput(actor="claims-to-be-bob", command="x"))
    assert record.sudo_user == "carol" and record.actor == "claims-to-be-bob"
    assert record.identity is not None and "carol" in record.identity.persons


def test_appended_is_the_head_after_this_store_wrote(tmp_path: Path) -> None:
    with SQLiteStateStore(tmp_path / "state.db") as fresh:
        assert fresh.appended is None
        record = fresh.audit_append(AuditEntryInput(actor="a", command="x"))
        assert fresh.appended is not None
        assert (fresh.appended.count, fresh.appended.head_hash) == (record.seq, record.hash)
        assert fresh.audit_head() == fresh.appended


# -- each kind of tampering, named -----------------------------------------------------


def test_edited_record(store: StateStore, opener: Opener) -> None:
    opener.tamper("UPDATE audit_log SET actor = 'mallory' WHERE seq = 3")
    report = store.verify_audit()
    assert not report.ok and report.kind == "edited" and report.bad_seq == 3
    assert len(report.findings) == 1


def test_edited_record_rehashed_without_the_key(store: StateStore, opener: Opener) -> None:
    put(opener, forge(store.audit_records()[2], reason="approved by the CISO"))
    report = store.verify_audit()
    assert report.kind == "edited" and report.bad_seq == 3
    assert report.problem is not None and "re-hashed" in report.problem
    assert len(report.findings) == 1


def test_deleted_middle_record(store: StateStore, opener: Opener) -> None:
    opener.tamper("DELETE FROM audit_log WHERE seq = 2")
    report = store.verify_audit()
    assert [f.kind for f in report.findings] == ["deleted"] and report.bad_seq == 2


def test_deleted_middle_record_and_the_rest_renumbered(store: StateStore, opener: Opener) -> None:
    opener.tamper("DELETE FROM audit_log WHERE seq = 2",
           *[f"UPDATE audit_log SET seq = {s - 1} WHERE seq = {s}" for s in (3, 4, 5)])
    set_head(opener, 4, store.audit_records()[-1].hash)
    report = store.verify_audit()
    assert report.kind == "deleted" and len(report.findings) == 1, report.findings


def test_deleted_last_record_is_seen_by_the_head(store: StateStore, opener: Opener) -> None:
    opener.tamper("DELETE FROM audit_log WHERE seq = 5")
    report = store.verify_audit()
    assert [f.kind for f in report.findings] == ["truncated"] and report.bad_seq == 5
    with pytest.raises(AuditBroken):  # never built upon
        store.audit_append(AuditEntryInput(actor="alice", command="later"))


def test_last_records_deleted_with_head_rewritten_need_a_witness(
    store: StateStore, opener: Opener,
) -> None:
    records = store.audit_records()
    opener.tamper("DELETE FROM audit_log WHERE seq > 3")
    set_head(opener, 3, records[2].hash)
    alone = store.verify_audit()
    assert alone.ok and any("no witnessed head" in w for w in alone.warnings)  # said, loudly
    witness = WitnessHead(seq=5, hash=records[4].hash, source="witness file /w", at="T5")
    report = store.verify_audit([witness])
    assert report.kind == "truncated" and report.bad_seq == 4
    assert report.problem is not None and "head rewritten" in report.problem


def test_database_replaced_by_an_older_copy(sqlite_store: SQLiteStateStore, tmp_path: Path) -> None:
    old_copy = tmp_path / "old.db"
    src, dst = sqlite3.connect(sqlite_store.path), sqlite3.connect(old_copy)
    src.backup(dst)  # a consistent copy, as a backup tool makes
    src.close()
    dst.close()
    older = sqlite_store.audit_records()
    sqlite_store.audit_append(AuditEntryInput(actor="alice", command="cmd-6"))
    newest = sqlite_store.audit_records()[-1]
    seen = [WitnessHead(seq=5, hash=older[-1].hash, source="syslog", at="T5"),
            WitnessHead(seq=6, hash=newest.hash, source="syslog", at="T6")]
    assert sqlite_store.verify_audit(seen).ok
    sqlite_store.close()
    shutil.copy(old_copy, sqlite_store.path)
    for suffix in ("-wal", "-shm"):
        Path(f"{sqlite_store.path}{suffix}").unlink(missing_ok=True)
    with SQLiteStateStore(sqlite_store.path) as reopened:
        report = reopened.verify_audit(seen)
    assert report.kind == "rolled_back" and "older copy" in (report.problem or "")


def test_forged_record_appended(store: StateStore, opener: Opener) -> None:
    last = store.audit_records()[-1]
    put(opener, forge(last, seq=6, prev_hash=last.hash, actor="mallory"))
    assert kinds(store) == ["inserted"]
    set_head(opener, 6, store.audit_records()[-1].hash)  # head updated too: same
    assert kinds(store) == ["inserted"]
    with pytest.raises(AuditBroken):  # the store refuses to build on a forged record
        store.audit_append(AuditEntryInput(actor="alice", command="later"))
    assert store.audit_records()[-1].actor == "mallory"


def test_forged_record_inserted_in_the_middle(store: StateStore, opener: Opener) -> None:
    records = store.audit_records()
    opener.tamper(*[f"UPDATE audit_log SET seq = {s + 1} WHERE seq = {s}" for s in (5, 4, 3)])
    put(opener, forge(records[0], seq=3, prev_hash=records[1].hash, actor="mallory"))
    report = store.verify_audit()
    assert [f.kind for f in report.findings] == ["inserted"] and report.bad_seq == 3


def test_swapped_records(store: StateStore, opener: Opener) -> None:
    opener.tamper("UPDATE audit_log SET seq = -1 WHERE seq = 2",
           "UPDATE audit_log SET seq = 2 WHERE seq = 3",
           "UPDATE audit_log SET seq = 3 WHERE seq = -1")
    report = store.verify_audit()
    assert {f.kind for f in report.findings} == {"reordered"} and report.bad_seq == 2


def test_reordered_list_is_detected_by_verify_chain(store: StateStore) -> None:
    records = store.audit_records()
    key = load_key(store.audit_key_file, create=False)
    assert verify_chain(records, key=key).ok
    report = verify_chain([records[0], records[2], records[1], *records[3:]], key=key)
    assert report.kind in ("reordered", "deleted") and not report.ok


def test_whole_chain_rewritten_without_the_key(store: StateStore, opener: Opener) -> None:
    prev = GENESIS_HASH
    for record in store.audit_records():
        fake = forge(record, prev_hash=prev, reason="nothing to see")
        put(opener, fake)
        prev = fake.hash
    set_head(opener, 5, prev)
    report = store.verify_audit()
    assert [f.kind for f in report.findings] == ["rewritten"]


def test_chain_seen_differently_by_a_witness_is_replaced(store: StateStore) -> None:
    seen = WitnessHead(seq=4, hash="ab" * 32, source="--expect-head")
    report = store.verify_audit([seen])
    assert report.kind == "replaced" and report.bad_seq == 4


def test_expected_head_that_matches(store: StateStore) -> None:
    record = store.audit_records()[3]
    report = store.verify_audit([WitnessHead(seq=4, hash=record.hash, source="--expect-head")])
    assert report.ok and any("not witnessed yet" in w for w in report.warnings)


def test_unreadable_record_is_reported_not_raised(store: StateStore, opener: Opener) -> None:
    opener.tamper("UPDATE audit_log SET at = 'yesterday' WHERE seq = 4")
    report = store.verify_audit()
    assert report.kind == "unreadable" and report.bad_seq == 4 and report.count == 3


# -- the key -------------------------------------------------------------------------------


def test_key_file_is_created_once_0600_outside_the_database(sqlite_store: SQLiteStateStore) -> None:
    key_file = sqlite_store.audit_key_file
    assert key_file == sqlite_store.path.with_name("audit.key")
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    first = key_file.read_bytes()
    with SQLiteStateStore(sqlite_store.path) as again:
        again.audit_append(AuditEntryInput(actor="a", command="x"))
    assert key_file.read_bytes() == first
    dump = "\n".join(sqlite3.connect(sqlite_store.path).iterdump())
    assert first.decode().strip() not in dump  # the key never enters the database
    assert [p.name for p in key_file.parent.iterdir() if p.name.startswith(".audit")] == []


def test_wrong_key_is_named_and_refused(sqlite_store: SQLiteStateStore, tmp_path: Path) -> None:
    other = tmp_path / "other.key"
    with SQLiteStateStore(sqlite_store.path, audit_key_file=other) as wrong:
        assert [f.kind for f in wrong.verify_audit().findings] == ["key_missing"]
        assert not other.exists()
        with pytest.raises(AuditBroken, match="keyed with key id .* does not exist"):
            wrong.audit_append(AuditEntryInput(actor="a", command="x"))
        assert not other.exists()  # a keyed chain never gets a new key made for it
    load_key(other, create=True)
    with SQLiteStateStore(sqlite_store.path, audit_key_file=other) as wrong:
        with pytest.raises(AuditBroken, match="keyed with key id"):
            wrong.audit_append(AuditEntryInput(actor="a", command="x"))
        assert [f.kind for f in wrong.verify_audit().findings] == ["wrong_key"]
    assert sqlite_store.verify_audit().ok


def test_missing_key_at_verify_is_a_finding(sqlite_store: SQLiteStateStore) -> None:
    sqlite_store.audit_key_file.rename(sqlite_store.audit_key_file.with_name("moved.key"))
    with SQLiteStateStore(sqlite_store.path) as keyless:
        assert [f.kind for f in keyless.verify_audit().findings] == ["key_missing"]
        assert not keyless.audit_key_file.exists()


@pytest.mark.parametrize("problem", ["group-readable", "symlink", "garbage"])
def test_unsafe_key_file_is_refused(tmp_path: Path, problem: str) -> None:
    key_file = tmp_path / "audit.key"
    if problem == "group-readable":
        load_key(key_file, create=True)
        key_file.chmod(0o640)
    elif problem == "symlink":
        target = tmp_path / "real.key"
        load_key(target, create=True)
        key_file.symlink_to(target)
    else:
        key_file.write_text("not a key\n")
        key_file.chmod(0o600)
    with SQLiteStateStore(tmp_path / "state.db") as fresh:
        with pytest.raises(StateError, match=str(key_file)) as err:
            fresh.audit_append(AuditEntryInput(actor="a", command="x"))
        assert err.value.hint
        assert fresh.audit_records() == []


def test_concurrent_key_creation_keeps_one_key(tmp_path: Path) -> None:
    key_file = tmp_path / "k" / "audit.key"
    keys = {load_key(key_file, create=True).secret for _ in range(3)}  # type: ignore[union-attr]
    assert len(keys) == 1
    assert sorted(p.name for p in key_file.parent.iterdir()) == ["audit.key"]


# -- migration of a chain written before keys ---------------------------------------------


def make_unkeyed_v2_file(path: Path, count: int) -> list[AuditRecord]:
    """A real schema-2 file (as the previous release wrote it) with `count` unkeyed records."""
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("CREATE TABLE schema_version (version INTEGER PRIMARY KEY, applied_at TEXT)")
    for version, statements in enumerate(MIGRATIONS[:2], start=1):
        for statement in statements:
            conn.execute(statement)
        conn.execute("INSERT INTO schema_version VALUES (?, '2026-01-01T00:00:00.000000Z')",
                     (version,))
    prev, records = GENESIS_HASH, []
    with SQLiteStateStore(path.with_name("clock.db")) as clock_source:
        at = clock_source._now()
    for seq in range(1, count + 1):
        draft = AuditRecord(seq=seq, at=at, actor="old", command=f"old-{seq}", service=None,
                            reason=None, before={}, after={"n": seq}, result="ok",
                            prev_hash=prev, hash="")
        record = dataclasses.replace(draft, hash=record_hash(draft))
        conn.execute("INSERT INTO audit_log VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                     row_values(record)[:11])
        prev = record.hash
        records.append(record)
    conn.execute("UPDATE audit_head SET count = ?, head_hash = ?", (count, prev))
    conn.close()
    return records


def test_unkeyed_chain_is_verified_then_continued_keyed(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    old = make_unkeyed_v2_file(path, 3)
    with SQLiteStateStore(path) as store:
        before = store.verify_audit()
        assert before.ok and before.unkeyed == 3 and before.keyed_from is None
        assert any("not keyed yet" in w for w in before.warnings)
        store.audit_append(AuditEntryInput(actor="alice", command="after-upgrade"))
        records = store.audit_records()
        boundary = records[3]
        assert boundary.command == BOUNDARY_COMMAND and boundary.prev_hash == old[-1].hash
        assert boundary.after["unkeyed_records"] == 3 and boundary.mac is not None
        assert records[4].command == "after-upgrade" and records[4].mac is not None
        report = store.verify_audit()
        assert report.ok and report.unkeyed == 3 and report.keyed_from == 4
    # the unkeyed part is pinned by the boundary's MAC: re-hashing an old record shows
    put(path, dataclasses.replace(forge(old[1], actor="mallory"), key_id=None, mac=None))
    with SQLiteStateStore(path) as store:
        assert store.verify_audit().kind == "edited"


def test_unkeyed_record_after_the_boundary_is_forged(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    make_unkeyed_v2_file(path, 2)
    with SQLiteStateStore(path) as store:
        store.audit_append(AuditEntryInput(actor="alice", command="x"))
        last = store.audit_records()[-1]
    stripped = dataclasses.replace(last, seq=5, prev_hash=last.hash, key_id=None, mac=None,
                                   os_uid=None, os_user=None, sudo_user=None, hostname=None)
    put(path, dataclasses.replace(stripped, hash=record_hash(stripped)))
    set_head(path, 5, record_hash(stripped))
    with SQLiteStateStore(path) as store:
        assert "forged" in [f.kind for f in store.verify_audit().findings]


def test_broken_unkeyed_chain_is_not_keyed(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    make_unkeyed_v2_file(path, 3)
    tamper(path, "UPDATE audit_log SET actor = 'mallory' WHERE seq = 2")
    with SQLiteStateStore(path) as store:
        with pytest.raises(AuditBroken, match="unkeyed records do not verify"):
            store.audit_append(AuditEntryInput(actor="alice", command="x"))
        assert len(store.audit_records()) == 3


# -- other behaviour kept ---------------------------------------------------------------


def test_audit_records_filter_and_limit(store: StateStore) -> None:
    assert [r.seq for r in store.audit_records(service="web")] == [1, 3, 5]
    assert [r.seq for r in store.audit_records(limit=2)] == [4, 5]
    assert [r.seq for r in store.audit_records(service="db", limit=1)] == [4]


def test_audit_before_and_after_are_redacted_in_the_file(tmp_path: Path) -> None:
    with SQLiteStateStore(tmp_path / "state.db") as sqlite_store:
        entry = AuditEntryInput(
            actor="alice",
            command="flip",
            before={"db": {"password": "hunter2"}},
            after={"token": "s3cr3t-value", "side": "green"},
        )
        record = sqlite_store.audit_append(entry)
        assert record.before == {"db": {"password": "***"}}
        assert record.after == {"token": "***", "side": "green"}
        assert sqlite_store.verify_audit().ok
        dump = "\n".join(sqlite3.connect(sqlite_store.path).iterdump())
    assert "hunter2" not in dump and "s3cr3t-value" not in dump


def test_known_secret_values_never_enter_the_store(tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """The values themselves (an inventory secret, a secret-named environment variable),
    wherever they stand: a router's stderr in `after`, a reason, a run's result."""
    from orchestrator import secrets

    monkeypatch.setattr(secrets, "_from_env", None)  # read the environment again
    monkeypatch.setenv("BLUEGREEN_LB_TOKEN", "S3cr3t-env-tok-41")
    secrets.remember_secret_values([{"nested": ["S3cr3t-inv-ab12"]}])
    with SQLiteStateStore(tmp_path / "state.db") as store:
        store.audit_append(AuditEntryInput(
            actor="alice", command="rollback.failed", reason="INC S3cr3t-inv-ab12",
            after={"error": "router script exited 1\n  stderr: token S3cr3t-env-tok-41 "
                            "https://u:S3cr3t-url-9@lb/x?sig=S3cr3t-q-2"},
        ))
        store.create_run("r1", "rollout", "web", {"hook": "S3cr3t-inv-ab12"}, "alice")
        store.finish_run("r1", "failed", "ansible said S3cr3t-inv-ab12")
        assert store.verify_audit().ok
    dump = "\n".join(sqlite3.connect(tmp_path / "state.db").iterdump())
    assert "S3cr3t" not in dump
    assert "<redacted>" in dump
