"""Issue 21, items 1 and 2, through the real CLI on the lab's own store (its key in
<lab>/audit/, its witness file): someone who can write the state database but not read the
audit key lifts a quarantine with one UPDATE, points the rollback target at it, or
downgrades the audit chain. Each time the command that would act on it is refused (exit 1,
naming the row or the forged records), traffic stays where it was (a request through the
frontend), the store is unchanged, and `audit verify` exits 1 naming what was done."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from orchestrator.lab.lab import Lab
from orchestrator.state.sql.rows import audit_from_row
from tests.reliability.helpers import state_db
from tests.support.attacks import downgrade_attack
from tests.support.cli import bluegreen, bluegreen_json
from tests.support.lab import reset_state_dir, router_live, served_by

pytestmark = [pytest.mark.lab]

WEB = "web"


def _dump(db: Path) -> list[str]:
    with sqlite3.connect(db) as conn:
        return list(conn.iterdump())


def _sql(db: Path, *statements: str) -> None:
    conn = sqlite3.connect(db, isolation_level=None)
    try:
        for statement in statements:
            conn.execute(statement)
    finally:
        conn.close()


def _refused(lab: Lab, live: str, *argv: str, expect: str) -> None:
    """`bluegreen ARGV` refuses (exit 1, `expect` in its message); nothing moved or changed."""
    db = state_db(lab)
    stored = _dump(db)
    proc = bluegreen(lab.paths.config, *argv)
    assert proc.returncode == 1, (argv, proc.stdout, proc.stderr)
    assert expect in proc.stderr and "Traceback" not in proc.stderr, proc.stderr
    assert served_by(lab, WEB) == live and router_live(lab, WEB) == f"web_{live}"
    assert _dump(db) == stored, argv


def test_a_database_writer_without_the_key_moves_no_traffic(lab: Lab) -> None:
    config = lab.paths.config
    reset_state_dir(lab)
    try:
        code, st = bluegreen_json(config, "status", WEB, "--adopt", "--reason", "baseline")
        assert code == 0, st
        live = st["live"]
        standby = "green" if live == "blue" else "blue"
        db = state_db(lab)
        # 1. a quarantine lifted by one UPDATE: flip (gate) and rollback (no host recheck)
        proc = bluegreen(config, "quarantine", WEB, "--side", standby, "--reason", "bad build")
        assert proc.returncode == 0, proc.stderr
        _sql(db, f"UPDATE sides SET state = 'verified' WHERE service = 'web' AND side = "
                 f"'{standby}'")
        named = f"sides web/{standby}: its MAC does not match its content (state=verified"
        _refused(lab, live, "flip", WEB, "--to", standby, "--reason", "INC-21", expect=named)
        _sql(db, f"UPDATE services SET rollback_to = '{standby}' WHERE service = 'web'")
        _refused(lab, live, "rollback", WEB, "--reason", "INC-21",
                 expect="services web: its MAC does not match its content")
        code, doc = bluegreen_json(config, "audit", "verify")
        assert code == 1 and not doc["ok"], doc
        rows = [f["message"] for f in doc["findings"] if f["kind"] == "row_forged"]
        assert len(rows) == 2 and any(named in m for m in rows), doc
        # 2. the audit downgrade: MACs stripped, the newest record re-attributed, re-linked
        reset_state_dir(lab)
        for reason in ("baseline", "again"):
            code, st = bluegreen_json(config, "status", WEB, "--adopt", "--reason", reason)
            assert code == 0, st
        conn = sqlite3.connect(db, isolation_level=None)
        conn.row_factory = sqlite3.Row
        try:
            records = [audit_from_row(r) for r in conn.execute("SELECT * FROM audit_log")]
            downgrade_attack(lambda sql, params=(): conn.execute(sql, params), records)
        finally:
            conn.close()
        _refused(lab, live, "flip", WEB, "--to", standby, "--force", "--reason", "INC-21",
                 expect="a downgrade")
        proc = bluegreen(config, "audit", "verify")
        assert proc.returncode == 1, proc.stdout
        assert "audit chain broken (forged)" in proc.stderr, proc.stderr
        assert "not keyed yet" not in proc.stderr
    finally:
        reset_state_dir(lab)
