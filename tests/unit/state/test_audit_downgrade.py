"""Issue 21, item 1: the audit downgrade. The fact that a chain is keyed, and from which
record, lives outside the store (the keyed marker beside the key, every witness line): a
chain stripped of its MACs, edited and re-linked with sha256, its head's key id set NULL, is
`forged` (never "not keyed yet"), and no command extends it (no boundary pins it)."""

from __future__ import annotations

import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from orchestrator.errors import AuditBroken
from orchestrator.state import AuditEntryInput, AuditRecord, SQLiteStateStore, StateStore
from orchestrator.state.audit import BOUNDARY_COMMAND, GENESIS_HASH
from orchestrator.state.audit_key import load_key
from orchestrator.state.audit_marker import marker_path, read_point, record_point
from orchestrator.state.audit_settings import WitnessSettings
from orchestrator.state.registry import StateLocation, sqlite_location
from orchestrator.state.witness import publish, read_witnessed
from tests.support.attacks import downgrade_attack, downgraded, write_downgrade
from tests.unit.state.conftest import Opener
from tests.unit.state.test_audit import make_unkeyed_v2_file


@pytest.fixture
def store(opener: Opener) -> Iterator[StateStore]:
    opened = opener()
    try:
        for number in range(1, 5):
            opened.audit_append(AuditEntryInput(
                actor="alice" if number != 3 else "bob", command="flip" if number == 3
                else f"cmd-{number}", service="web", reason="INC-9",
                after={"forced": number == 3}))
        yield opened
    finally:
        opened.close()


def _refused_and_unchanged(opener: Opener, count: int) -> None:
    """The next ordinary command (another process) refuses; nothing is appended."""
    with opener() as again:
        with pytest.raises(AuditBroken, match="downgrade") as err:
            again.audit_append(AuditEntryInput(actor="carol", command="rollback"))
        assert err.value.hint
        records = again.audit_records()
        assert len(records) == count
        assert all(r.command != BOUNDARY_COMMAND and r.mac is None for r in records)
        assert again.audit_head().key_id is None


def test_the_issues_downgrade_is_forged_and_never_extended(store: StateStore,
                                                          opener: Opener) -> None:
    point = read_point(opener.key_file, store.location)  # type: ignore[attr-defined]
    assert point is not None and point.first_seq == 1 and point.prefix_hash == GENESIS_HASH
    forged = downgrade_attack(opener.tamper, store.audit_records())
    assert forged[2].actor == "mallory" and forged[2].after["forced"] is False
    with opener() as fresh:
        report = fresh.verify_audit()
    assert not report.ok and report.kind == "forged", report.findings
    assert "records 1..4 have no MAC" in (report.problem or "")
    assert "keyed marker" in (report.problem or "")
    assert not any("not keyed yet" in w for w in report.warnings)
    assert any(f.kind == "forged" and "stored head" in f.message for f in report.findings)
    _refused_and_unchanged(opener, 4)


def test_a_chain_keyed_before_markers_is_forged_when_downgraded(store: StateStore,
                                                                opener: Opener) -> None:
    marker_path(opener.key_file).unlink()  # as a release before markers left it
    downgrade_attack(opener.tamper, store.audit_records())
    with opener() as fresh:
        report = fresh.verify_audit()
    assert report.kind == "forged" and "audit key" in (report.problem or ""), report.findings
    _refused_and_unchanged(opener, 4)
    assert not marker_path(opener.key_file).exists()  # the forgery is not pinned either


def test_a_chain_keyed_before_markers_gets_its_marker_on_first_use(
        store: StateStore, opener: Opener) -> None:
    marker_path(opener.key_file).unlink()
    with opener() as again:
        again.audit_append(AuditEntryInput(actor="alice", command="x"))
        assert again.verify_audit().ok
    point = read_point(opener.key_file, store.location)  # type: ignore[attr-defined]
    assert point is not None and point.first_seq == 1
    assert stat.S_IMODE(marker_path(opener.key_file).stat().st_mode) == 0o600


def test_a_witness_line_names_the_keyed_point_without_a_marker(
        store: StateStore, opener: Opener, tmp_path: Path) -> None:
    """Team mode: this machine's copy of the key has no marker; the shared witness says
    the chain is keyed from record 1."""
    settings = WitnessSettings(syslog="off", file=tmp_path / "witness.log")
    assert all(r.ok for r in publish(store.audit_head(), store.location, settings, 1))
    assert "keyed=1 " in settings.file.read_text()  # type: ignore[union-attr]
    marker_path(opener.key_file).unlink()
    opener.key_file.unlink()  # this machine has no key at all: the witness still knows
    downgrade_attack(opener.tamper, store.audit_records())
    with opener() as fresh:
        seen = read_witnessed(settings, store.location, None)  # type: ignore[attr-defined]
        assert [h.keyed_from for h in seen.heads] == [1]
        report = fresh.verify_audit(seen.heads, seen.sources)
    kinds = [f.kind for f in report.findings]
    assert "forged" in kinds and "witness file" in (report.problem or ""), report.findings


def test_upgraded_chain_is_keyed_from_the_marker_and_a_stripped_tail_is_refused(
        tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    old = make_unkeyed_v2_file(path, 3)
    with SQLiteStateStore(path) as upgraded:
        upgraded.audit_append(AuditEntryInput(actor="alice", command="after-upgrade"))
        point = read_point(upgraded.audit_key_file, str(path))
        assert point is not None and (point.first_seq, point.prefix_hash) == (4, old[-1].hash)
        records = upgraded.audit_records()
    opener = Opener("sqlite", upgraded_location(path), path.with_name("audit.key"))
    write_downgrade(opener.tamper, downgraded(records, 2, actor="mallory"))
    with SQLiteStateStore(path) as fresh:
        report = fresh.verify_audit()
        assert "forged" in [f.kind for f in report.findings], report.findings
        assert "records 4..5 have no MAC" in " ".join(f.message for f in report.findings)
        with pytest.raises(AuditBroken, match="keyed since record 4"):
            fresh.audit_append(AuditEntryInput(actor="carol", command="x"))
        assert len(fresh.audit_records()) == 5


def upgraded_location(path: Path) -> StateLocation:
    return sqlite_location(path)


def crash_window(path: Path) -> list[AuditRecord]:
    """A 3-record chain written before keys whose key (and marker) was made by the first
    change after the upgrade, which then failed before its commit."""
    old = make_unkeyed_v2_file(path, 3)
    key = load_key(path.with_name("audit.key"), create=True)
    assert key is not None
    record_point(path.with_name("audit.key"), str(path), key.key_id, 4, old[-1].hash)
    return old


def test_no_boundary_over_records_newer_than_the_key(tmp_path: Path) -> None:
    """The key was made for a 3-record chain (its first keyed write then failed); someone
    appends unkeyed records after it: verify says forged, no boundary is written."""
    path = tmp_path / "state.db"
    old = crash_window(path)
    key_file = path.with_name("audit.key")
    with SQLiteStateStore(path) as crashed:  # the crash window: a warning, then keyed
        report = crashed.verify_audit()
        assert report.ok and any("keyed from record 4 on" in w for w in report.warnings)
    longer = downgraded([*old, *make_unkeyed_v2_file(tmp_path / "more.db", 5)[3:]], 0)
    opener = Opener("sqlite", upgraded_location(path), key_file)
    write_downgrade(opener.tamper, longer)
    with SQLiteStateStore(path) as fresh:
        report = fresh.verify_audit()
        assert report.kind == "forged" and "records 4..5" in (report.problem or "")
        with pytest.raises(AuditBroken, match="keyed since record 4"):
            fresh.audit_append(AuditEntryInput(actor="carol", command="x"))
        assert [r.command for r in fresh.audit_records()] == [r.command for r in longer]


def test_key_made_after_the_crash_window_keys_the_chain(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    crash_window(path)
    with SQLiteStateStore(path) as store:
        store.audit_append(AuditEntryInput(actor="alice", command="x"))
        assert [r.command for r in store.audit_records()][3:] == [BOUNDARY_COMMAND, "x"]
        assert store.verify_audit().ok
