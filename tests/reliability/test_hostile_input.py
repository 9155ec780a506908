"""Hostile input: every case in tests/data/hostile/ (config, inventory, campaign files, CLI arguments,
advisory feeds) gives
one clear message (naming the file or field, with a fix), the documented exit code, and
changes nothing: the state store (audit head and count, services, runs) and the router (live
backend of each service in HAProxy's memory, the map file's bytes) are compared before and
after each case. The index (tests/data/hostile/index.json) says what each case expects."""

from __future__ import annotations

import json
import shutil
import sqlite3
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from orchestrator.lab.lab import Lab, haproxy_command
from orchestrator.state.sql.rows import audit_from_row
from tests.reliability.helpers import FIGURES, state_db
from tests.support.attacks import downgrade_attack
from tests.support.cli import bluegreen, bluegreen_json
from tests.support.lab import reset_state_dir

pytestmark = [pytest.mark.lab]

CORPUS = Path(__file__).parents[1] / "data" / "hostile"
INDEX = json.loads((CORPUS / "index.json").read_text())
CASES: list[dict[str, Any]] = INDEX["cases"]
CANARY = Path("/tmp/bluegreen-hostile-pwned")
FIGURES["corpus"] = len(CASES)


def test_corpus_is_big_enough_and_every_file_is_indexed() -> None:
    assert len(CASES) >= 40
    files = {p.relative_to(CORPUS).as_posix() for p in CORPUS.rglob("*") if p.is_file()}
    assert files - {"index.json"} == {c["file"] for c in CASES}


@pytest.fixture(scope="module")
def primed(lab: Lab) -> Lab:
    """A state store with history in it (so 'unchanged' means something)."""
    reset_state_dir(lab)
    code, doc = bluegreen_json(
        lab.paths.config, "status", "web", "--adopt", "--reason", "hostile corpus baseline"
    )
    assert code == 0, doc
    return lab


def snapshot(lab: Lab) -> dict[str, Any]:
    from orchestrator.state.sqlite import SQLiteStateStore

    db = state_db(lab)
    with SQLiteStateStore(db, audit_key_file=lab.paths.audit_key) as store:
        report = store.verify_audit()
        services = sorted((s.service, s.live_side) for s in store.list_services())
        runs = [(r.run_id, r.status) for r in store.list_runs()]
        locks = [store.get_lock(s) for s in ("web", "api")]
    return {
        "audit": (report.ok, report.count, report.head_hash),
        "services": services,
        "runs": runs,
        "locks": locks,
        "router": haproxy_command(lab.paths.haproxy_socket, f"show map {lab.paths.map_file}"),
        "map_file": lab.paths.map_file.read_bytes(),
        # the advisories' download cache (public repository indexes, fetched before a feed
        # is parsed) may appear beside the store: a cache, not state
        "state_files": sorted(p.name for p in db.parent.iterdir() if p.name != "advisories"),
    }


def _materialize(lab: Lab, case: dict[str, Any], tmp: Path) -> list[str]:
    """The argv (after `bluegreen`) for one case; case files are copied with @LAB@ filled."""
    src = CORPUS / case["file"]
    lab_root = str(lab.paths.root).encode()
    data = src.read_bytes().replace(b"@LAB@", lab_root)
    if case["kind"] == "cli":
        argv = json.loads(data.decode().split("\n", 1)[1])
        return ["-c", str(lab.paths.config), *argv]
    if case["kind"] == "state":  # the store was edited (`_attack_store`): the lab's config
        return ["-c", str(lab.paths.config), *case["args"]]
    target = tmp / src.name
    if case.get("pad_to_bytes"):
        data += b"#" * (int(case["pad_to_bytes"]) - len(data)) + b"\n"
    if case["kind"] == "config":
        target.write_bytes(data)
        return ["-c", str(target), *case["args"]]
    if case["kind"] == "campaign":
        target.write_bytes(data)
        return ["-c", str(lab.paths.config),
                *[str(target) if a == "{file}" else a for a in case["args"]]]
    if case["kind"] == "feed":  # an advisory feed given with --feed [KIND:]{file}
        target.write_bytes(data)
        config = lab.paths.config
        if case.get("config"):  # e.g. a lower advisories.max_mb, so "too large" stays small
            import yaml

            doc = yaml.safe_load(config.read_text())
            for key, value in case["config"].items():
                doc[key] = {**doc.get(key, {}), **value}
            config = tmp / "bluegreen.yml"
            config.write_text(yaml.safe_dump(doc))
        return ["-c", str(config), *[a.replace("{file}", str(target)) for a in case["args"]]]
    # inventory: the lab config, pointing at the hostile inventory
    target.write_bytes(data)
    cfg = lab.paths.config.read_text().replace(
        f"inventory: {lab.paths.inventory}", f"inventory: {target}"
    )
    assert str(target) in cfg
    (tmp / "bluegreen.yml").write_text(cfg)
    return ["-c", str(tmp / "bluegreen.yml"), *case["args"]]


def _attack_store(lab: Lab, case: dict[str, Any], tmp: Path,
                  standby: str) -> Callable[[], None]:
    """A database writer without the audit key (kind=state): run the case's setup commands,
    then edit the lab's store as it says ({standby}: web's standby side). Returns what puts
    the store and the witness file back as they were (the corpus shares one primed store)."""
    spec = json.loads((CORPUS / case["file"]).read_text().replace("{standby}", standby))
    db, witness = state_db(lab), lab.paths.witness_file
    backup = tmp / "state-backup"
    shutil.copytree(db.parent, backup)
    witnessed = witness.read_bytes() if witness.exists() else None

    def restore() -> None:
        shutil.rmtree(db.parent)
        shutil.copytree(backup, db.parent)
        if witnessed is None:
            witness.unlink(missing_ok=True)
        else:
            witness.write_bytes(witnessed)

    for argv in spec["setup"]:
        proc = bluegreen(lab.paths.config, *argv)
        assert proc.returncode == 0, proc.stderr
    conn = sqlite3.connect(db, isolation_level=None)
    conn.row_factory = sqlite3.Row
    try:
        if spec["attack"] == "downgrade":
            rows = conn.execute("SELECT * FROM audit_log ORDER BY seq").fetchall()
            downgrade_attack(lambda sql, params=(): conn.execute(sql, params),
                             [audit_from_row(r) for r in rows])
        for statement in spec["sql"]:
            conn.execute(statement)
    finally:
        conn.close()
    return restore


@pytest.mark.parametrize("case", CASES, ids=[c["file"] for c in CASES])
def test_hostile_case(primed: Lab, case: dict[str, Any], tmp_path: Path) -> None:
    if case["kind"] != "state":
        _hostile_case(primed, case, tmp_path)
    else:
        FIGURES["db_writer"] += 1
        code, status = bluegreen_json(primed.paths.config, "status", "web")
        assert code == 0, status
        standby = "green" if status["live"] == "blue" else "blue"  # whatever earlier tests did
        case = json.loads(json.dumps(case).replace("{standby}", standby))
        restore = _attack_store(primed, case, tmp_path, standby)
        try:
            _hostile_case(primed, case, tmp_path)
        finally:
            restore()
        FIGURES["db_writer_ok"] += 1
    shutil.rmtree(tmp_path, ignore_errors=True)


def _hostile_case(lab: Lab, case: dict[str, Any], tmp_path: Path) -> None:
    argv = _materialize(lab, case, tmp_path)
    before = snapshot(lab)
    CANARY.unlink(missing_ok=True)
    # bluegreen() adds its own -c first; a later -c in argv wins (click keeps the last)
    proc = bluegreen(lab.paths.config, *argv, timeout=120)
    out = proc.stdout + proc.stderr
    after = snapshot(lab)
    assert proc.returncode == case["exit"], out
    assert "Traceback" not in out, out
    # one terminal policy: what the input says is shown, never obeyed (ESC, BEL, C1 CSI)
    assert not {"\x1b", "\x07", "\x9b"} & set(out), repr(out)
    hint = case.get("hint", "fix:")
    assert hint in out, out
    for text in case["expect"]:
        assert text in out, f"{text!r} not in {out!r}"
    errors = [line for line in out.splitlines() if line.lower().startswith("error")]
    # one clear message; a case with "errors": 0 is input skipped with a note, not refused
    assert len(errors) == case.get("errors", 1), out
    assert after == before, "bad input changed the state store or the router"
    assert not CANARY.exists(), "a shell ran a command from the input"
    FIGURES["corpus_ok"] += 1


def test_hostile_reason_is_stored_as_given_and_shown_as_one_line(primed: Lab) -> None:
    """A reason with a newline that forges a second history line, escape sequences and
    invisible characters: stored exactly (`--json`), shown escaped, one record one line."""
    lab = primed
    # (a NUL cannot pass through argv: the OS refuses it before bluegreen sees it)
    reason = "INC-1\n 9999 2026-01-01 00:00:00 root  rollback ok\r\x1b[2J\x1b[31m\u202e\x07\x7f"
    # a rollback that moves traffic (so it is recorded): first a forced flip to the standby,
    # then `rollback` back to the side live before it (a rollback is not a toggle: without
    # an earlier flip it changes nothing and records nothing)
    code, st = bluegreen_json(lab.paths.config, "status", "web")
    assert code == 0, st
    standby = "green" if st["live"] == "blue" else "blue"
    proc = bluegreen(lab.paths.config, "flip", "web", "--to", standby, "--force", "--reason",
                     "hostile reason (setup)")
    assert proc.returncode == 0, proc.stderr
    proc = bluegreen(lab.paths.config, "rollback", "web", "--reason", reason)
    assert proc.returncode == 0, proc.stderr
    code, records = bluegreen_json(lab.paths.config, "history", "web", "--limit", "1")
    assert code == 0 and records[-1]["reason"] == reason and records[-1]["command"] == "rollback"
    shown = bluegreen(lab.paths.config, "history", "web", "--limit", "1")
    assert shown.returncode == 0, shown.stderr
    lines = shown.stdout.splitlines()
    assert len(lines) == 1, shown.stdout
    assert "\x1b" not in shown.stdout and "\r" not in shown.stdout and "\x07" not in shown.stdout
    assert "INC-1\\n 9999" in lines[0] and "\\x1b[2J" in lines[0] and "\\u202e" in lines[0]
    code, st = bluegreen_json(lab.paths.config, "status", "web")
    assert code == 0 and st["live"] != standby, st  # traffic is back where it was
