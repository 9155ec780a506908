"""Row seals: the rows that gate traffic (services, sides, runs) carry a MAC under the audit
key, over every column of the row (content and generation; not `mac` itself, nor
PostgreSQL's `insert_order`), so that one side row set to `state = 'verified'` by someone
who can write the database but not read the key is refused, not obeyed.

- Written: every write of such a row seals it right after (`_touch`), in the same
  transaction, after a checked read of the row it changes (never re-sealing a row it did
  not check).
- Checked: every read through the store (`get_service`, `get_side`, `get_run`, and the
  reads inside a write transaction: the gate, the flip, the transitions) raises
  `RowForged` for a row whose MAC fails, or that has none although the key exists.
  `audit verify` checks every row.
- Trusted once: rows found when the schema gains the column (migration), and rows written
  before the store's first keyed record (when the key is created), are sealed as they are
  (as the unkeyed audit records before the keyed boundary are).

What a seal does not show: a row put back from an older copy of the database together with
its MAC (a replay) verifies; `audit verify` compares each side's row with the newest audit
record of it, and the witnesses show an older database. Stdlib only (rollback reads rows).
"""

from __future__ import annotations

import hashlib
import hmac
from pathlib import Path
from typing import Any

from orchestrator.errors import AuditBroken, RowForged
from orchestrator.state.audit import canonical_json
from orchestrator.state.audit_key import AuditKey
from orchestrator.state.sql.database import Connection, SqlDatabase

SEALED: dict[str, tuple[str, ...]] = {
    "services": ("service",),
    "sides": ("service", "side"),
    "runs": ("run_id",),
}
"""The sealed tables and their primary keys."""
_NOT_COVERED = frozenset({"mac", "insert_order"})
_COVERED_WHEN_SET: dict[str, object] = {"exposed_side": None, "exposure_percent": 0}
"""Columns added after the seals (services' exposure, schema 8 / 5): covered when they
differ from their default, so that the seals written before them still verify (a column at
its default says what its absence said: no exposure), and any change of them is caught."""
_SHOWN = {"services": ("live_side", "rollback_to", "pending_flip", "flip_problem",
                      "exposed_side", "exposure_percent"),
          "sides": ("state", "patch_level", "generation"), "runs": ("status",)}


def row_mac(secret: bytes, table: str, row: Any) -> str:
    content = {name: row[name] for name in row.keys()  # noqa: SIM118
               if name not in _NOT_COVERED
               and not (name in _COVERED_WHEN_SET and row[name] == _COVERED_WHEN_SET[name])}
    body = canonical_json({"table": table, "row": content}).encode("ascii")
    return hmac.new(secret, body, hashlib.sha256).hexdigest()


def row_problem(key: AuditKey, table: str, row: Any) -> str | None:
    """Why `row` of `table` is not as bluegreen wrote it (None: its MAC matches)."""
    name = f"{table} {'/'.join(str(row[c]) for c in SEALED[table])}"
    shown = ", ".join(f"{c}={row[c]}" for c in _SHOWN[table] if c in row.keys())  # noqa: SIM118
    if row["mac"] is None:
        return (f"{name}: it carries no MAC although the audit key exists ({shown}): the row "
                "was written or changed outside bluegreen")
    if not hmac.compare_digest(row_mac(key.secret, table, row), str(row["mac"])):
        return (f"{name}: its MAC does not match its content ({shown}): the row was changed "
                "outside bluegreen")
    return None


def forged(location: str, problem: str) -> RowForged:
    return RowForged(
        f"{problem} (in {location}); nothing was changed",
        hint="run `bluegreen audit verify`, find out who wrote the database, and restore it "
        "from a backup; bluegreen never acts on a row it did not write",
    )


def seal_rows(conn: Connection, secret: bytes, *, only_unsealed: bool = True) -> int:
    """Seal every row (without a MAC) of the sealed tables, as found: a migration, or the
    store's key being created. Returns how many."""
    count = 0
    for table, keys in SEALED.items():
        where = " WHERE mac IS NULL" if only_unsealed else ""
        for row in conn.execute(f"SELECT * FROM {table}{where}").fetchall():
            _write_mac(conn, secret, table, keys, row)
            count += 1
    return count


def _write_mac(conn: Connection, secret: bytes, table: str, keys: tuple[str, ...],
               row: Any) -> None:
    conn.execute(f"UPDATE {table} SET mac = ? WHERE {' AND '.join(f'{k} = ?' for k in keys)}",
                 (row_mac(secret, table, row), *(row[k] for k in keys)))


def seal_at_migration(conn: Connection, key_file: Path, location: str) -> int:
    """The migration that adds the seals: the rows found are trusted as they are and sealed
    with the audit key (none yet, on a chain not keyed yet: then they are sealed when the
    key is made). A keyed chain cannot be migrated without its key (AuditBroken)."""
    head = conn.execute("SELECT key_id FROM audit_head WHERE id = 1").fetchone()
    keyed = head["key_id"] if head is not None else None
    if keyed is None and not any(conn.execute(f"SELECT 1 FROM {table} LIMIT 1").fetchone()
                                 for table in SEALED):
        return 0  # a new store: nothing to seal (its key is read when it first writes)
    key = _load(key_file)
    if keyed is not None and (key is None or key.key_id != keyed):
        raise AuditBroken(
            f"cannot migrate {location}: its rows are sealed with the audit key (id {keyed}), "
            f"and the key file {key_file} is {'missing' if key is None else 'another key'}",
            hint="point audit.key_file at the key this store was written with, then retry",
        )
    return 0 if key is None else seal_rows(conn, key.secret)


class RowSeals(SqlDatabase):
    """Touch, seal and check the sealed rows of one store."""

    def _touch(self, conn: Connection, table: str, *key: str) -> None:
        """Row `key` of `table` was just written (after a checked read of it, or inserted):
        seal it now, so that later reads in this transaction check it too. Without a key
        (a chain not keyed yet) it stays unsealed until the key is made (`_seal_found`)."""
        secret = self._key or _load(self.audit_key_file)
        if secret is None:
            return
        self._key = secret
        names = SEALED[table]
        row = conn.execute(
            f"SELECT * FROM {table} WHERE {' AND '.join(f'{k} = ?' for k in names)}", key
        ).fetchone()
        if row is not None:
            _write_mac(conn, secret.secret, table, names, row)

    def _seal_found(self, conn: Connection, key: AuditKey) -> None:
        """The key was just made for this store: the rows written before it are trusted
        as they are (as the unkeyed audit records are) and sealed."""
        seal_rows(conn, key.secret)

    def _checked(self, table: str, row: Any) -> Any:
        """`row` when its seal holds (or no key exists yet); RowForged otherwise."""
        if row is None:
            return None
        if self._key is None:
            self._key = _load(self.audit_key_file)
            if self._key is None:
                return row
        problem = row_problem(self._key, table, row)
        if problem is not None:
            raise forged(self.location, problem)
        return row

    def row_problems(self, conn: Connection) -> list[str]:
        """Every sealed row whose MAC fails (for `audit verify`); [] without a key."""
        key = self._key or _load(self.audit_key_file)
        if key is None:
            return []
        problems = []
        for table in SEALED:
            for row in conn.execute(f"SELECT * FROM {table}").fetchall():
                problem = row_problem(key, table, row)
                if problem is not None:
                    problems.append(problem)
        return problems


def _load(path: Any) -> AuditKey | None:
    from orchestrator.state.audit_key import load_key

    return load_key(path, create=False)
