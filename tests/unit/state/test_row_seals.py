"""Issue 21, item 2: the rows that gate traffic (services, sides, runs) carry a MAC under the
audit key; a row changed outside bluegreen is refused on every read that gates traffic (and
named by `audit verify`), on both backends; the migration seals the rows it finds."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest

from orchestrator.errors import AuditBroken, RowForged
from orchestrator.state import AuditEntryInput, SQLiteStateStore, StateStore
from orchestrator.state.audit_key import load_key
from orchestrator.state.sqlite.schema import MIGRATIONS, SEALED_FROM
from orchestrator.testing import FakeRouter
from orchestrator.traffic import FlipRequest, move_traffic
from tests.unit.state.conftest import Opener

E = AuditEntryInput(actor="alice", command="test")


@pytest.fixture
def store(opener: Opener) -> Iterator[StateStore]:
    """web: blue live, green quarantined after a verification; a finished run."""
    opened = opener()
    try:
        opened.set_live_side("web", "blue", audit=E)
        begun = opened.begin_patch("web", "green", "v2", audit=E)
        opened.record_patch("web", "green", "v2", expected_generation=begun.generation,
                            audit=E)
        opened.record_verification("web", "green", True, "v2", "ok", audit=E)
        opened.quarantine("web", "green", "INC-1: bad build", audit=E)
        opened.create_run("run-1", "rollout", "web", {}, "alice")
        opened.finish_run("run-1", "failed", "patch failed")
        yield opened
    finally:
        opened.close()


def _forged_kinds(opener: Opener) -> list[str]:
    with opener() as fresh:
        return [f.message for f in fresh.verify_audit().findings if f.kind == "row_forged"]


def test_intact_rows_verify(store: StateStore, opener: Opener) -> None:
    assert store.verify_audit().ok
    assert _forged_kinds(opener) == []


def test_lifting_a_quarantine_by_sql_is_refused_and_reported(store: StateStore,
                                                             opener: Opener) -> None:
    opener.tamper("UPDATE sides SET state = 'verified' WHERE service = 'web' AND side = 'green'")
    with opener() as fresh:
        with pytest.raises(RowForged) as err:
            fresh.get_side("web", "green")
        assert str(err.value).startswith(
            "sides web/green: its MAC does not match its content (state=verified")
        assert "changed outside bluegreen" in str(err.value) and err.value.hint
        router = FakeRouter({"web": "blue"})
        for command in ("flip", "rollback"):
            with pytest.raises(AuditBroken, match="sides web/green"):
                move_traffic(fresh, router, FlipRequest(
                    service="web", command=command, reason="INC-2", actor="mallory",
                    to="green", abort_in_flight=False))
        assert router.memory["web"] == router.persisted["web"] == "blue"  # nothing moved
        assert [r.command for r in fresh.audit_records()][-1] == "run.finish"
        svc = fresh.get_service("web")
        assert svc is not None and svc.pending_flip is None
    assert _forged_kinds(opener) == [str(err.value).split(" (in ")[0]]


WRITES = {
    "services": lambda s: s.set_live_side("web", "blue", audit=E),
    "sides web/green": lambda s: s.begin_patch("web", "green", "v3", audit=E),
    "runs": lambda s: s.begin_flip("web", "blue", "green", command="flip", actor="a",
                                   reason="r", run_id="run-1") and s.get_run("run-1"),
}


@pytest.mark.parametrize(("statement", "named"), [
    ("UPDATE services SET rollback_to = 'green' WHERE service = 'web'", "services web"),
    ("UPDATE sides SET generation = generation + 5 WHERE side = 'green'", "sides web/green"),
    ("UPDATE services SET mac = NULL", "services web: it carries no MAC"),
    ("UPDATE runs SET status = 'running' WHERE run_id = 'run-1'", "runs run-1"),
    ("UPDATE services SET exposed_side = 'green', exposure_percent = 50", "services web"),
])
def test_every_gating_row_is_sealed(store: StateStore, opener: Opener, statement: str,
                                    named: str) -> None:
    opener.tamper(statement)
    with opener() as fresh:
        with pytest.raises(RowForged, match=named):
            fresh.get_service("web")
            fresh.get_side("web", "blue")
            fresh.get_side("web", "green")
            fresh.get_run("run-1")
        before = fresh.audit_head()
        write = next(w for prefix, w in WRITES.items() if named.startswith(prefix))
        with pytest.raises(RowForged, match=named):  # no write builds on it either
            write(fresh)
        if not named.startswith("runs"):
            assert fresh.audit_head() == before
    assert len(_forged_kinds(opener)) == 1


def test_a_row_copied_from_another_service_is_refused(store: StateStore, opener: Opener) -> None:
    """The MAC covers the row's key too: green's verified row pasted over blue's."""
    opener.tamper("UPDATE sides SET side = 'x' WHERE side = 'blue'",
                  "UPDATE sides SET side = 'blue' WHERE side = 'green'")
    with opener() as fresh, pytest.raises(RowForged, match="sides web/blue"):
        fresh.get_side("web", "blue")


def _v4_file_with_rows(path: Path) -> None:
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("CREATE TABLE schema_version (version INTEGER PRIMARY KEY, applied_at TEXT)")
    for version, statements in enumerate(MIGRATIONS[:SEALED_FROM - 1], start=1):
        for statement in statements:
            conn.execute(statement)
        conn.execute("INSERT INTO schema_version VALUES (?, '2026-01-01T00:00:00.000000Z')",
                     (version,))
    conn.execute("INSERT INTO services (service, live_side, updated_at) VALUES "
                 "('web', 'blue', '2026-01-01T00:00:00.000000Z')")
    conn.execute("INSERT INTO sides (service, side, state) VALUES ('web', 'green', 'verified')")
    conn.close()


def test_migration_seals_the_rows_it_finds_with_an_existing_key(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    _v4_file_with_rows(path)
    load_key(path.with_name("audit.key"), create=True)
    with SQLiteStateStore(path) as migrated:  # trusted as found, sealed
        side = migrated.get_side("web", "green")
        assert side is not None and side.state == "verified"
        assert not [f for f in migrated.verify_audit().findings if f.kind == "row_forged"]
    sqlite3.connect(path, isolation_level=None).execute("UPDATE sides SET state = 'patched'")
    with SQLiteStateStore(path) as again, pytest.raises(RowForged):
        again.get_side("web", "green")


def test_rows_without_a_key_are_sealed_when_the_key_is_made(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    _v4_file_with_rows(path)
    with SQLiteStateStore(path) as migrated:
        assert not migrated.audit_key_file.exists()
        assert migrated.get_side("web", "green") is not None  # no key: nothing to check
        migrated.audit_append(AuditEntryInput(actor="alice", command="first keyed"))
        assert migrated.audit_key_file.exists()
    with SQLiteStateStore(path) as keyed:
        assert keyed.verify_audit().ok
        sqlite3.connect(path, isolation_level=None).execute("UPDATE services SET mac = NULL")
        with pytest.raises(RowForged, match="carries no MAC"):
            keyed.get_service("web")


class _Row(dict[str, object]):
    """What sqlite3.Row and psycopg's dict rows offer `row_mac`: keys() and [name]."""


def test_seals_written_before_the_exposure_columns_still_verify() -> None:
    """Schema 7 (PostgreSQL 4) adds the exposure columns: at their defaults they leave a
    row's MAC as it was, so the migration needs no re-sealing; set, they are covered."""
    from orchestrator.state.sql.seals import row_mac

    old = _Row(service="web", live_side="blue", updated_at="t", rollback_to=None,
               flip_problem=None, pending_flip=None, rollback_kept=None, mac="x")
    new = _Row(old, exposed_side=None, exposure_percent=0)
    assert row_mac(b"k", "services", old) == row_mac(b"k", "services", new)
    for changed in ({"exposed_side": "green"}, {"exposure_percent": 5},
                    {"exposed_side": "green", "exposure_percent": 0}):
        assert row_mac(b"k", "services", _Row(new, **changed)) != row_mac(b"k", "services", new)
