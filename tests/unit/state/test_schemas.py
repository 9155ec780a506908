"""One logical schema on both backends (issue 25): a fresh SQLite file and a fresh
PostgreSQL database, each brought up through its own migration history, have the same
tables, columns (types mapped to SQLite's affinities), defaults, NOT NULL, primary keys,
references, checks and indexes, read back from each database's own catalog. The only
differences allowed are what the table list (`state.sql.tables`) gives one backend alone.
"""

from __future__ import annotations

import re
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

from orchestrator.state.postgresql.schema import SCHEMA_VERSION as PG_VERSION
from orchestrator.state.registry import backend, parse_state_url
from orchestrator.state.sql.tables import LATEST, POSTGRESQL, SQLITE, TABLES
from orchestrator.state.sqlite.schema import SCHEMA_VERSION as SQLITE_VERSION
from tests.support import postgres

Schema = dict[str, dict[str, Any]]

POSTGRESQL_ONLY = {"traffic_holders": None, "runs": {"insert_order"}}
"""Table -> its columns only PostgreSQL has (None: the whole table)."""


def _literals(expression: str) -> tuple[str, ...]:
    """The quoted strings and bare numbers of a CHECK, sorted: what it allows."""
    return tuple(sorted(re.findall(r"'([^']*)'", expression)
                        + re.findall(r"(?<![\w'.])(\d+)(?![\w'])", expression)))


def _checks_in(create: str) -> dict[str, tuple[str, ...]]:
    """SQLite's CHECKs (column -> literals), from the CREATE TABLE text it keeps."""
    body = create[create.index("(") + 1 : create.rindex(")")]
    parts, depth, start = [], 0, 0
    for i, ch in enumerate(body):
        depth += ch == "("
        depth -= ch == ")"
        if ch == "," and depth == 0:
            parts.append(body[start:i])
            start = i + 1
    parts.append(body[start:])
    out = {}
    for part in parts:
        if "CHECK" in part:
            out[part.split()[0]] = _literals(part[part.index("CHECK"):])
    return out


def _affinity(declared: str) -> str:
    """SQLite's type affinity of a declared type (PostgreSQL's names map the same)."""
    declared = declared.upper()
    return "integer" if "INT" in declared else "text" if "TEXT" in declared else declared


def _default(value: str | None) -> str | None:
    return None if value is None else value.split("::")[0].strip("()")


def sqlite_schema(path: Path) -> Schema:
    location = parse_state_url(f"sqlite://{path}")
    backend(location).migrate(location, audit_key_file=path.with_name("audit.key"))
    conn = sqlite3.connect(path)
    try:
        out: Schema = {}
        for name, create in conn.execute(
                "SELECT name, sql FROM sqlite_master WHERE type = 'table' ORDER BY name"):
            columns = conn.execute(f"PRAGMA table_info({name})").fetchall()
            out[name] = {
                "columns": {c[1]: (_affinity(c[2]), bool(c[3]) or c[5] > 0, _default(c[4]))
                            for c in columns},
                "primary_key": tuple(c[1] for c in sorted(columns, key=lambda c: c[5])
                                     if c[5] > 0),
                "references": sorted((f[3], f[2], f[4]) for f in
                                     conn.execute(f"PRAGMA foreign_key_list({name})")),
                "checks": _checks_in(create),
                "indexes": sorted(
                    (i[1], tuple(c[2] for c in conn.execute(f"PRAGMA index_info({i[1]})")))
                    for i in conn.execute(f"PRAGMA index_list({name})") if i[3] == "c"),
            }
        return out
    finally:
        conn.close()


def postgresql_schema(url: str) -> Schema:
    out: Schema = {}
    with psycopg.connect(url) as conn:
        tables = [r[0] for r in conn.execute(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = 'public' "
            "AND table_type = 'BASE TABLE' ORDER BY table_name")]
        for name in tables:
            columns = conn.execute(
                "SELECT column_name, data_type, is_nullable, column_default FROM "
                "information_schema.columns WHERE table_schema = 'public' AND table_name = %s",
                (name,)).fetchall()
            constraints = conn.execute(
                "SELECT c.contype, pg_get_constraintdef(c.oid), "
                "ARRAY(SELECT a.attname FROM unnest(c.conkey) WITH ORDINALITY k(n, o) "
                "      JOIN pg_attribute a ON a.attrelid = c.conrelid AND a.attnum = k.n "
                "      ORDER BY k.o) "
                "FROM pg_constraint c WHERE c.conrelid = %s::regclass", (name,)).fetchall()
            out[name] = {
                "columns": {c[0]: (_affinity(c[1]), c[2] == "NO", _default(c[3]))
                            for c in columns},
                "primary_key": next((tuple(k) for t, _, k in constraints if t == "p"), ()),
                "references": sorted(
                    (k[0], *re.findall(r"REFERENCES (\w+)\((\w+)\)", d)[0])
                    for t, d, k in constraints if t == "f"),
                "checks": {k[0]: _literals(d) for t, d, k in constraints if t == "c"},
                "indexes": sorted(
                    (r[0], tuple(re.findall(r"\((.*)\)", r[1])[0].split(", ")))
                    for r in conn.execute(
                        "SELECT indexname, indexdef FROM pg_indexes WHERE tablename = %s "
                        "AND indexname NOT IN (SELECT conname FROM pg_constraint)", (name,))),
            }
    return out


@pytest.fixture
def fresh_postgresql() -> Iterator[str]:
    with postgres.throwaway_database() as url:
        yield postgres.migrated(url)


def test_a_fresh_sqlite_and_a_fresh_postgresql_database_have_one_logical_schema(
        tmp_path: Path, fresh_postgresql: str) -> None:
    lite = sqlite_schema(tmp_path / "state.db")
    pg = postgresql_schema(fresh_postgresql)
    for table, columns in POSTGRESQL_ONLY.items():
        if columns is None:
            assert table not in lite
            del pg[table]
        else:
            for column in columns:
                assert column not in lite[table]["columns"]
                del pg[table]["columns"][column]
    assert sorted(lite) == sorted(pg)
    for table in lite:
        assert lite[table] == pg[table], table
    # what the comparison saw: every table of the list, with its keys, checks and indexes
    assert {"services", "sides", "runs", "journal", "locks", "audit_log", "audit_head",
            "epochs", "work_campaigns", "work_queue", "workers", "schema_version"} <= set(lite)
    assert lite["sides"]["primary_key"] == ("service", "side")
    assert lite["sides"]["references"] == [("service", "services", "service")]
    assert lite["sides"]["checks"]["side"] == ("blue", "green")
    assert lite["sides"]["columns"]["state"] == ("text", True, "'untouched'")
    assert lite["audit_head"]["checks"] == {"id": ("1",)}
    assert lite["runs"]["indexes"] == [("runs_by_service", ("service", "status"))]


def test_the_table_list_names_what_only_postgresql_has_and_both_histories_end_at_it() -> None:
    only = {t.name: None for t in TABLES if t.only == "postgresql"} | {
        t.name: {c.name for c in t.columns if c.only == "postgresql"}
        for t in TABLES if any(c.only == "postgresql" for c in t.columns)}
    assert only == POSTGRESQL_ONLY
    assert not any(t.only == "sqlite" or any(c.only == "sqlite" for c in t.columns)
                   for t in TABLES)
    # each backend keeps its version numbers: PostgreSQL's 1 is SQLite's 4, created at once
    assert SQLITE_VERSION == SQLITE.version(LATEST) == LATEST
    assert PG_VERSION == POSTGRESQL.version(LATEST) == LATEST - 3
