"""The PostgreSQL backend against the real server: URLs and passwords, the schema and its
migrations, advisory locks across processes (kill -9 of a holder), one audit chain for
concurrent writers, and `state copy` from a SQLite file."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import psycopg
import pytest
from click.testing import CliRunner

from orchestrator.cli import main
from orchestrator.errors import LockHeld, StateError
from orchestrator.state import AuditEntryInput, SQLiteStateStore
from orchestrator.state.postgresql.keys import lock_key
from orchestrator.state.postgresql.schema import SCHEMA_VERSION
from orchestrator.state.registry import backend, default_key_file, open_store, parse_state_url
from tests.support import postgres

ENTRY = AuditEntryInput(actor="alice", command="test", reason="unit test")


@pytest.fixture
def url() -> Iterator[str]:
    """A fresh migrated database of its own (these tests start other processes on it)."""
    with postgres.throwaway_database() as fresh:
        yield postgres.migrated(fresh)


def opened(url: str, key: Path, **options: object):  # type: ignore[no-untyped-def]
    return open_store(parse_state_url(url), audit_key_file=key, **options)  # type: ignore[arg-type]


def child(url: str, key: Path, body: str) -> subprocess.Popen[str]:
    code = (
        "import sys, time\nfrom pathlib import Path\n"
        "from orchestrator.state.registry import open_store, parse_state_url\n"
        "from orchestrator.state import AuditEntryInput\n"
        f"s = open_store(parse_state_url({url!r}), audit_key_file=Path({str(key)!r}))\n"
        + body
    )
    return subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


# -- URLs and passwords ----------------------------------------------------------------------


def test_urls_name_their_backend_and_never_carry_a_password() -> None:
    pg = parse_state_url("postgres://ops@db.example:5433/bluegreen?sslmode=verify-full")
    assert pg.scheme == "postgresql" and pg.path is None
    assert pg.url == "postgresql://ops@db.example:5433/bluegreen?sslmode=verify-full"
    assert pg.label == "postgresql://ops@db.example:5433/bluegreen"  # no query in messages
    lite = parse_state_url("sqlite:///srv/bg/state.db")
    assert lite.path == Path("/srv/bg/state.db") and lite.label == "/srv/bg/state.db"
    with pytest.raises(ValueError, match="PGPASSWORD"):
        parse_state_url("postgresql://ops:hunter2@db/bluegreen")
    with pytest.raises(ValueError, match="names no database"):
        parse_state_url("postgresql://ops@db")
    with pytest.raises(ValueError, match="unknown state backend 'mysql'"):
        parse_state_url("mysql://ops@db/bg")


def test_config_takes_a_url_or_a_path_not_both(tmp_path: Path) -> None:
    from orchestrator.config.loaded import load_config
    from orchestrator.errors import BadInput

    example = Path(__file__).resolve().parents[3] / "inventories" / "example" / "bluegreen.yml"
    text = example.read_text()
    config = tmp_path / "bluegreen.yml"
    config.write_text(text + "\nstate:\n  url: postgresql://ops@db.example/bluegreen\n")
    (tmp_path / "hosts.ini").write_text("")
    loaded = load_config(config)
    assert loaded.state.scheme == "postgresql" and loaded.state_path is None
    assert loaded.state_dir == tmp_path / ".bluegreen"
    assert default_key_file(loaded.state, tmp_path) == tmp_path / ".bluegreen" / "audit.key"
    config.write_text(text + "\nstate:\n  url: postgresql://ops:pw@db.example/bluegreen\n")
    with pytest.raises(BadInput) as caught:
        load_config(config)
    assert "state.url" in str(caught.value) and "pw@" not in str(caught.value)
    config.write_text(text + "\nstate:\n  url: sqlite:///x.db\n  path: y.db\n")
    with pytest.raises(BadInput, match="not both"):
        load_config(config)


def test_password_comes_from_the_environment_and_never_shows(
        url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    role, secret = f"bg_pw_{os.getpid()}", "s3cret-Pw-for-test"
    database = url.split("/")[-1].split("?")[0]
    with postgres.admin() as conn:
        conn.execute(f"DROP ROLE IF EXISTS {role}")
        conn.execute(f"CREATE ROLE {role} LOGIN PASSWORD '{secret}'")
    try:
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute(f"GRANT ALL ON ALL TABLES IN SCHEMA public TO {role}")
        tcp = f"postgresql://{role}@127.0.0.1/{database}?sslmode=disable"
        monkeypatch.delenv("PGPASSWORD", raising=False)
        monkeypatch.setenv("PGPASSFILE", str(tmp_path / "none"))
        with pytest.raises(StateError) as caught:
            opened(tcp, tmp_path / "audit.key")
        assert "PGPASSWORD" in (caught.value.hint or "") and secret not in str(caught.value)
        passfile = tmp_path / "pgpass"
        passfile.write_text(f"127.0.0.1:*:{database}:{role}:{secret}\n")
        passfile.chmod(0o600)
        monkeypatch.setenv("PGPASSFILE", str(passfile))
        store = opened(tcp, tmp_path / "audit.key")
        try:
            store.set_live_side("web", "blue", audit=ENTRY)
            assert store.get_service("web") is not None
        finally:
            store.close()
        monkeypatch.setenv("PGPASSFILE", str(tmp_path / "none"))
        monkeypatch.setenv("PGPASSWORD", secret)
        store = opened(tcp, tmp_path / "audit.key")
        store.close()
    finally:
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute(f"REVOKE ALL ON ALL TABLES IN SCHEMA public FROM {role}")
        with postgres.admin() as conn:
            conn.execute(f"DROP ROLE IF EXISTS {role}")


# -- schema ------------------------------------------------------------------------------


def test_schema_is_created_by_migrate_only_and_versions_are_checked(tmp_path: Path) -> None:
    with postgres.throwaway_database() as fresh:
        with pytest.raises(StateError) as caught:
            opened(fresh, tmp_path / "audit.key")
        assert "state migrate" in (caught.value.hint or "")
        location = parse_state_url(fresh)
        assert backend(location).migrate(location, audit_key_file=tmp_path / "k") == (
            0, SCHEMA_VERSION)
        assert backend(location).migrate(location, audit_key_file=tmp_path / "k") == (
            SCHEMA_VERSION, SCHEMA_VERSION)
        opened(fresh, tmp_path / "audit.key").close()
        postgres.execute(fresh, "INSERT INTO schema_version VALUES (99, 'later')")
        with pytest.raises(StateError, match="version 99"):
            opened(fresh, tmp_path / "audit.key")


# -- locks ---------------------------------------------------------------------------------


def test_lock_keys_are_namespaced_hashes() -> None:
    keys = {lock_key(kind, svc) for kind in ("run", "traffic") for svc in ("web", "api")}
    assert len(keys) == 4 and all(-(2**63) <= k < 2**63 for k in keys)
    assert lock_key("run", "web") == lock_key("run", "web")


def session_ends(gone: Callable[[], bool], within_s: float = 30.0) -> None:
    """Wait until `gone()`: the server ends a killed client's session once it notices the
    closed socket, a moment after the kill on a busy machine (the caller asserts after)."""
    deadline = time.monotonic() + within_s
    while not gone() and time.monotonic() < deadline:
        time.sleep(0.05)


def test_run_lock_of_a_killed_holder_is_taken_over_from_another_process(
        url: str, tmp_path: Path) -> None:
    key = tmp_path / "audit.key"
    holder = child(url, key, "s.acquire_lock('web', 'run-1')\nprint('held', flush=True)\n"
                   "time.sleep(120)\n")
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        with opened(url, key) as store:
            with pytest.raises(LockHeld) as caught:
                store.acquire_lock("web", "run-2")
            assert "run-1" in str(caught.value) and str(holder.pid) in str(caught.value)
            assert store.get_lock("web") is not None
            os.kill(holder.pid, signal.SIGKILL)
            holder.wait(10)
            session_ends(lambda: store.get_lock("web") is None)
            assert store.get_lock("web") is None  # the session ended with its holder
            lock = store.acquire_lock("web", "run-2")
            assert lock.run_id == "run-2"
            takeover = store.audit_records()[-1]
            assert takeover.command == "lock.takeover" and "session" in (takeover.reason or "")
            assert store.verify_audit().ok
    finally:
        if holder.poll() is None:
            holder.kill()
        holder.wait(10)


def test_racing_processes_get_the_run_lock_once(url: str, tmp_path: Path) -> None:
    key = tmp_path / "audit.key"
    with opened(url, key) as store:  # the key exists before the racers start
        store.audit_append(ENTRY)
    racers = [child(url, key, "from orchestrator.errors import LockHeld\n"
                    "try:\n    s.acquire_lock('web', f'run-{__import__(\"os\").getpid()}')\n"
                    "    print('got', flush=True)\n    time.sleep(2)\n"
                    "except LockHeld:\n    print('held', flush=True)\n") for _ in range(4)]
    outcomes = []
    for racer in racers:
        out, err = racer.communicate(timeout=60)
        assert racer.returncode == 0, err
        outcomes.append(out.strip())
    assert sorted(outcomes) == ["got", "held", "held", "held"]


def test_force_release_ends_a_stuck_holders_session(url: str, tmp_path: Path) -> None:
    key = tmp_path / "audit.key"
    holder = child(url, key, "s.acquire_lock('web', 'run-1')\nprint('held', flush=True)\n"
                   "time.sleep(120)\n")
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        with opened(url, key) as store:
            with pytest.raises(LockHeld, match="not gone"):  # asked, never taken from a live one
                store.force_release_lock("web", "campaign abort", "oncall")
            assert store.get_lock("web") is not None
            removed = store.force_release_lock("web", "stuck run", "oncall", end_holder=True)
            assert removed is not None and removed.run_id == "run-1"
            record = store.audit_records()[-1]
            assert record.command == "lock.force_release"
            assert "server pid" in str(record.after["terminated_session"])
            assert store.acquire_lock("web", "run-2").run_id == "run-2"
    finally:
        holder.kill()
        holder.wait(10)


# -- one audit chain ----------------------------------------------------------------------


def test_concurrent_writers_extend_one_chain_that_never_forks(url: str, tmp_path: Path) -> None:
    key = tmp_path / "audit.key"
    with opened(url, key) as store:
        store.audit_append(ENTRY)
    writers = [child(url, key, "for n in range(25):\n"
                     "    s.audit_append(AuditEntryInput(actor=f'w{i}', command=f'c{n}'))\n"
                     .replace("{i}", str(i))) for i in range(4)]
    for writer in writers:
        _, err = writer.communicate(timeout=120)
        assert writer.returncode == 0, err
    with opened(url, key) as store:
        records = store.audit_records()
        report = store.verify_audit()
    assert report.ok, report.problem
    assert [r.seq for r in records] == list(range(1, 102))
    assert len({r.prev_hash for r in records}) == 101  # no two records share a parent
    assert {r.actor for r in records[1:]} == {"w0", "w1", "w2", "w3"}


# -- state copy ---------------------------------------------------------------------------


def test_state_copy_from_sqlite_keeps_the_chain_verifiable(url: str, tmp_path: Path) -> None:
    db = tmp_path / "state" / "state.db"
    with SQLiteStateStore(db) as lite:
        lite.set_live_side("web", "blue", audit=ENTRY)
        lite.begin_patch("web", "green", "2026-12", audit=ENTRY)
        lite.create_run("r1", "rollout", "web", {"token": "hidden"}, "alice")
        lite.create_run("r2", "rollout", "web", {}, "alice")
        lite.journal_begin("r1", "patch")
        lite.finish_run("r1", "failed", "interrupted")  # a store in use is refused
        lite.finish_run("r2", "aborted", "by test")
        source_records = lite.audit_records()
    with postgres.throwaway_database() as empty:
        out = CliRunner().invoke(main, ["state", "copy", "--from", f"sqlite://{db}",
                                        "--to", empty, "--json"])
        assert out.exit_code == 0, out.output
        doc = json.loads(out.output)
        assert doc["rows"]["runs"] == 2 and doc["rows"]["audit_log"] == len(source_records)
        with opened(empty, db.with_name("audit.key")) as team:
            copied = team.audit_records()
            assert copied[:-1] == source_records
            assert copied[-1].command == "state.copy" and str(db) in (copied[-1].reason or "")
            assert team.verify_audit().ok
            assert [r.run_id for r in team.list_runs("web")] == ["r1", "r2"]
            side = team.get_side("web", "green")
            assert side is not None and side.state == "patching"
            assert team.journal("r1")[0].step == "patch"
        again = CliRunner().invoke(main, ["state", "copy", "--from", f"sqlite://{db}",
                                          "--to", empty])
        assert again.exit_code == 1 and "not empty" in again.output
    bad = CliRunner().invoke(main, ["state", "copy", "--from", f"sqlite://{db}",
                                    "--to", "postgresql://u:pw@h/db"])
    assert bad.exit_code == 2 and "pw" not in bad.output.replace("PGPASSWORD", "")


# -- schedulers on several machines -------------------------------------------------------


def test_a_second_scheduler_sees_who_runs_the_campaign_until_that_holder_dies(
        url: str, tmp_path: Path) -> None:
    from orchestrator.campaign.events import campaign_lock
    from orchestrator.campaign.runs import running_elsewhere

    key = tmp_path / "audit.key"
    holder = child(url, key, f"s.acquire_lock({campaign_lock('c')!r}, 'campaign-c-1')\n"
                   "print('held', flush=True)\ntime.sleep(120)\n")
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        with opened(url, key) as store:
            elsewhere = running_elsewhere(store, "c")
            assert elsewhere is not None and elsewhere.as_dict()["exit_code"] == 0
            assert "campaign-c-1" in elsewhere.message and str(holder.pid) in elsewhere.message
            os.kill(holder.pid, signal.SIGKILL)
            holder.wait(10)
            session_ends(lambda: running_elsewhere(store, "c") is None)
            assert running_elsewhere(store, "c") is None  # a resume takes the run over
            assert store.acquire_lock(campaign_lock("c"), "campaign-c-1").run_id == "campaign-c-1"
    finally:
        if holder.poll() is None:
            holder.kill()
        holder.wait(10)


def test_a_password_parameter_is_refused_like_one_in_the_user_info() -> None:
    """libpq takes `?password=` too (issue 21, item 13): refused, case and spacing aside."""
    for url in ("postgresql://ops@db/bluegreen?password=hunter2",
                "postgresql://ops@db/bluegreen?sslmode=require&PASSWORD=hunter2",
                "postgresql://ops@db/bluegreen?password="):
        with pytest.raises(ValueError, match="password= . parameter|PGPASSWORD") as info:
            parse_state_url(url)
        assert "hunter2" not in str(info.value)
    assert parse_state_url("postgresql://ops@db/bg?passfile=/etc/bg/pgpass").url.endswith(
        "passfile=/etc/bg/pgpass")
