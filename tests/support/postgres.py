"""The real PostgreSQL server for the tests: the local cluster `./bootstrap.sh test` (and
`./bootstrap.sh postgres`) starts, throwaway databases on it, and stores opened on them.

Tests FAIL (never skip) when the server cannot be reached.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import psycopg
import pytest

ADMIN_URL = os.environ.get("BLUEGREEN_TEST_PG_ADMIN", "postgresql:///postgres")
"""Where the tests create their databases (the role needs CREATEDB); by default the local
cluster over its unix socket as the OS user (bootstrap creates that role)."""

TABLES = ("journal", "runs", "sides", "services", "locks", "traffic_holders", "audit_log",
          "epochs", "work_queue", "work_campaigns", "workers")


def admin() -> psycopg.Connection[tuple[object, ...]]:
    try:
        return psycopg.connect(ADMIN_URL, autocommit=True, connect_timeout=10)
    except psycopg.OperationalError as exc:
        pytest.fail(f"the test PostgreSQL server is not reachable at {ADMIN_URL}: {exc}\n"
                    "  fix: ./bootstrap.sh postgres (installs and starts Debian's cluster)",
                    pytrace=False)


def database_url(name: str) -> str:
    """The URL of database `name` on the admin URL's server."""
    base = ADMIN_URL.split("?", 1)
    head = base[0].rsplit("/", 1)[0]
    return f"{head}/{name}" + (f"?{base[1]}" if len(base) > 1 else "")


@contextmanager
def throwaway_database(prefix: str = "bluegreen_test") -> Iterator[str]:
    """A new empty database (its URL), dropped afterwards (sessions still on it ended)."""
    name = f"{prefix}_{os.getpid()}_{secrets.token_hex(4)}"
    with admin() as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield database_url(name)
    finally:
        with admin() as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def migrated(url: str) -> str:
    from orchestrator.state.registry import backend, parse_state_url

    location = parse_state_url(url)
    backend(location).migrate(location, audit_key_file=Path("/nonexistent"))
    return url


def empty_tables(url: str) -> None:
    """Every bluegreen table emptied and the audit head back to genesis: a fresh store
    without the cost of a new database."""
    from orchestrator.state.audit import GENESIS_HASH

    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(f"TRUNCATE {', '.join(TABLES)}")
        conn.execute("UPDATE audit_head SET count = 0, head_hash = %s, key_id = NULL",
                     (GENESIS_HASH,))


def execute(url: str, *statements: str, params: tuple[object, ...] = ()) -> None:
    """Edit the database behind the store's back (`?` placeholders, as the shared SQL)."""
    with psycopg.connect(url, autocommit=True) as conn:
        for statement in statements:
            sql = statement.replace("?", "%s")
            conn.execute(sql, params) if params else conn.execute(sql)


def backend_pid(store: object) -> int:
    """The server process (session) of a PostgreSQL store's connection."""
    pid = store._conn.raw.info.backend_pid  # type: ignore[attr-defined]
    return int(pid)


def terminate_session(url: str, pid: int, *, timeout_s: float = 20.0) -> None:
    """`pg_terminate_backend(pid)` (what `unlock`, a DBA or a failover does to a holder),
    then wait until the session is really gone: its advisory locks end with it, not with
    the signal. Fails the test if it outlives `timeout_s`."""
    import time

    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("SELECT pg_terminate_backend(%s)", (pid,))
        deadline = time.monotonic() + timeout_s
        while conn.execute("SELECT 1 FROM pg_stat_activity WHERE pid = %s",
                           (pid,)).fetchone() is not None:
            if time.monotonic() > deadline:
                pytest.fail(f"session {pid} still exists {timeout_s} s after "
                            "pg_terminate_backend")
            time.sleep(0.01)


def snapshot(url: str) -> dict[str, list[tuple[object, ...]]]:
    """Every bluegreen table's rows (and the audit head), to prove nothing was written."""
    with psycopg.connect(url, autocommit=True) as conn:
        return {table: sorted(map(tuple, conn.execute(f"SELECT * FROM {table}").fetchall()),
                              key=repr)
                for table in (*TABLES, "audit_head")}
