"""The audit trail through the real CLI on the lab: every command that changed something
leaves its head with the witnesses (the lab's append-only file, a real rsyslogd collector
over TCP), `audit verify` checks the chain against them and names what was done to it, a
witness that is down is a warning (stderr and --json), never a failed rollback, and every
record carries the OS identity next to --actor."""

from __future__ import annotations

import os
import shutil
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from orchestrator.lab.lab import Lab
from tests.support.cli import bluegreen, bluegreen_json
from tests.support.lab import served_by
from tests.support.sshd_fixture import free_port
from tests.support.syslog_fixture import SyslogCollector, syslog_collector

pytestmark = [pytest.mark.lab]


@pytest.fixture(scope="module")
def collector(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SyslogCollector]:
    with syslog_collector(tmp_path_factory.mktemp("syslog")) as running:
        yield running


@pytest.fixture(autouse=True)
def api_where_it_was(lab: Lab, tmp_path: Path) -> Iterator[None]:
    """These tests move `api` with stores of their own: put its traffic back where the
    lab's own store has it, even when a test fails halfway."""
    before = served_by(lab, "api")
    yield
    if served_by(lab, "api") != before:
        config = config_with(lab, tmp_path / "restore")
        proc = bluegreen(config, "rollback", "api", "--to", before, "--reason", "test cleanup")
        assert proc.returncode == 0, proc.stderr


def config_with(lab: Lab, tmp: Path, **witness: object) -> Path:
    """The lab's config with its own state store (under `tmp`) and these witness settings."""
    doc = yaml.safe_load(lab.paths.config.read_text())
    doc["state"]["path"] = str(tmp / "state" / "state.db")
    doc["audit"]["witness"] = {"syslog": "off", "file": str(tmp / "witness.log"), **witness}
    tmp.mkdir(exist_ok=True)
    path = tmp / "bluegreen.yml"
    path.write_text(yaml.safe_dump(doc))
    return path


def rollback(config: Path, reason: str) -> dict[str, object]:
    code, doc = bluegreen_json(config, "rollback", "api", "--reason", reason)
    assert code == 0, doc
    return dict(doc)


def test_rollback_leaves_its_head_with_every_witness(lab: Lab, tmp_path: Path,
                                                     collector: SyslogCollector) -> None:
    config = config_with(lab, tmp_path, syslog=collector.address,
                         syslog_copy=str(collector.log))
    doc = rollback(config, "INC-1 witnessed")
    witnessed = doc["audit_witness"]
    assert isinstance(witnessed, dict)
    assert [r["ok"] for r in witnessed["results"]] == [True, True], witnessed
    seq, head_hash = witnessed["head"].split(":")
    collector.wait_for(f"seq={seq} hash={head_hash}")
    assert f"seq={seq} hash={head_hash}" in (tmp_path / "witness.log").read_text()
    rollback(config, "INC-1 back")
    code, report = bluegreen_json(config, "audit", "verify")
    assert code == 0 and report["ok"], report
    assert report["witness"]["seq"] == report["count"], report
    assert len(report["witness_sources"]) == 2 and report["warnings"] == [], report
    text = bluegreen(config, "audit", "verify")
    assert text.returncode == 0 and "agrees" in text.stdout, text.stdout + text.stderr
    # commands that change nothing publish nothing
    lines = (tmp_path / "witness.log").read_text().count("\n")
    assert bluegreen(config, "history").returncode == 0
    assert bluegreen(config, "status", "api").returncode == 0
    assert (tmp_path / "witness.log").read_text().count("\n") == lines


def test_unreachable_witness_warns_and_the_rollback_still_happens(lab: Lab,
                                                                 tmp_path: Path) -> None:
    port = free_port()  # nobody listens
    config = config_with(lab, tmp_path, syslog=f"tcp://127.0.0.1:{port}", file=None)
    code, doc = bluegreen_json(config, "rollback", "api", "--reason", "INC-2 no collector")
    assert code == 0, doc
    assert doc["changed"] is True
    results = doc["audit_witness"]["results"]
    assert [r["ok"] for r in results] == [False] and f"127.0.0.1:{port}" in results[0]["detail"]
    proc = bluegreen(config, "rollback", "api", "--reason", "INC-2 back")
    assert proc.returncode == 0, proc.stderr
    assert "warning: audit head not witnessed" in proc.stderr and str(port) in proc.stderr
    # no witness readable: verify says so loudly, and --require-witness fails
    code, report = bluegreen_json(config, "audit", "verify")
    assert code == 0 and any("no witnessed head" in w for w in report["warnings"]), report
    code, report = bluegreen_json(config, "audit", "verify", "--require-witness")
    assert code == 1 and report["kind"] == "unwitnessed", report


def _truncate_and_rewrite_head(db: Path, keep: int) -> None:
    conn = sqlite3.connect(db, isolation_level=None)
    try:
        head = conn.execute("SELECT hash FROM audit_log WHERE seq = ?", (keep,)).fetchone()[0]
        conn.execute("DELETE FROM audit_log WHERE seq > ?", (keep,))
        conn.execute("UPDATE audit_head SET count = ?, head_hash = ?", (keep, head))
    finally:
        conn.close()


def test_truncation_with_the_head_rewritten_is_caught_by_the_collector(
    lab: Lab, tmp_path: Path, collector: SyslogCollector
) -> None:
    """The attacker also empties the local witness file: the remote collector remains."""
    config = config_with(lab, tmp_path, syslog=collector.address,
                         syslog_copy=str(collector.log))
    for i in range(4):
        rollback(config, f"INC-3 step {i}")
    code, before = bluegreen_json(config, "audit", "verify")
    assert code == 0 and before["ok"], before
    collector.wait_for(f"seq={before['count']} ")
    _truncate_and_rewrite_head(tmp_path / "state" / "state.db", before["count"] - 3)
    (tmp_path / "witness.log").write_text("")
    code, report = bluegreen_json(config, "audit", "verify")
    assert code == 1 and report["kind"] == "truncated", report
    assert "head rewritten" in report["problem"]
    proc = bluegreen(config, "audit", "verify")
    assert proc.returncode == 1 and "audit chain broken (truncated)" in proc.stderr


def test_database_replaced_by_an_older_copy_is_named(lab: Lab, tmp_path: Path) -> None:
    config = config_with(lab, tmp_path)
    rollback(config, "INC-4 first")
    db = tmp_path / "state" / "state.db"
    src, dst = sqlite3.connect(db), sqlite3.connect(tmp_path / "old.db")
    src.backup(dst)
    src.close()
    dst.close()
    rollback(config, "INC-4 second")
    os.remove(db)
    for suffix in ("-wal", "-shm"):
        Path(f"{db}{suffix}").unlink(missing_ok=True)
    shutil.copy(tmp_path / "old.db", db)
    code, report = bluegreen_json(config, "audit", "verify")
    assert code == 1 and report["kind"] == "rolled_back", report


def test_expected_head_kept_by_an_auditor(lab: Lab, tmp_path: Path) -> None:
    config = config_with(lab, tmp_path)
    rollback(config, "INC-5")
    code, report = bluegreen_json(config, "audit", "verify")
    head = f"{report['count']}:{report['head_hash']}"
    rollback(config, "INC-5 back")
    code, report = bluegreen_json(config, "audit", "verify", "--expect-head", head)
    assert code == 0 and report["ok"] and report["given"][0]["source"] == "--expect-head"
    wrong = f"{head.split(':')[0]}:{'0' * 64}"
    code, report = bluegreen_json(config, "audit", "verify", "--expect-head", wrong)
    assert code == 1 and report["kind"] == "replaced", report
    code, report = bluegreen_json(config, "audit", "verify", "--expect-head", "12:nothex")
    assert code == 2 and "SEQ:HASH" in report["error"], report


def test_records_carry_the_os_identity_next_to_the_actor(lab: Lab, tmp_path: Path) -> None:
    config = config_with(lab, tmp_path)
    proc = bluegreen(config, "--actor", "alice", "rollback", "api", "--reason", "INC-6",
                     env={"SUDO_USER": "carol"})
    assert proc.returncode == 0, proc.stderr
    code, records = bluegreen_json(config, "history", "api", "--limit", "1")
    last = records[-1]
    assert last["actor"] == "alice" and last["os_uid"] == os.getuid()
    assert last["sudo_user"] == "carol" and last["os_user"] and last["hostname"]
    assert last["mac"] and last["key_id"]
    shown = bluegreen(config, "history", "api", "--limit", "1").stdout
    assert "alice" in shown and "by carol>" in shown, shown
    rollback(config, "INC-6 back")
