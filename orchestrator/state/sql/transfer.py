"""Every row of a store, out and in, exactly as stored (`bluegreen state copy`): the audit
chain keeps its hashes and MACs, and the services, sides and runs their seals (`seals.py`),
so they verify on the other side with the same key.

Locks are not copied: they belong to the processes (and, on PostgreSQL, the sessions) that
hold them; the epochs handed out with them are (they only grow). Runs keep their insertion
order.
"""

from __future__ import annotations

from typing import Any

from orchestrator.errors import StateError
from orchestrator.state.models import AuditEntryInput
from orchestrator.state.sql.chain import AuditChain

COLUMNS: dict[str, tuple[str, ...]] = {
    "services": ("service", "live_side", "updated_at", "rollback_to", "flip_problem",
                 "pending_flip", "rollback_kept", "exposed_side", "exposure_percent", "mac"),
    "sides": ("service", "side", "patch_level", "patched_at", "verified_at", "verification_ok",
              "verified_patch_level", "verification_summary", "state", "state_since",
              "state_reason", "generation", "hosts", "mac"),
    "runs": ("run_id", "kind", "service", "status", "params", "actor", "started_at",
             "finished_at", "result", "epoch", "mac"),
    "journal": ("run_id", "seq", "step", "phase", "data", "at"),
    "audit_log": ("seq", "at", "actor", "command", "service", "reason", "before", "after",
                  "result", "prev_hash", "hash", "os_uid", "os_user", "sudo_user", "hostname",
                  "key_id", "mac"),
    "epochs": ("lock", "epoch", "run_id", "at"),
}
"""The tables copied, in an order that keeps foreign keys satisfied, and their columns."""

Dump = dict[str, list[tuple[Any, ...]]]


class TableTransfer(AuditChain):
    """`dump()` every row; `load()` them into an empty store."""

    def dump(self) -> tuple[Dump, tuple[int, str, str | None]]:
        """Every row of the copied tables and the stored audit head, one snapshot."""
        order = {"runs": f"started_at, {self.INSERT_ORDER}", "journal": "run_id, seq",
                 "audit_log": "seq", "services": "service", "sides": "service, side",
                 "epochs": "lock"}
        out: Dump = {}
        with self._read() as conn:
            for table, columns in COLUMNS.items():
                rows = conn.execute(
                    f"SELECT {', '.join(columns)} FROM {table} ORDER BY {order[table]}"
                ).fetchall()
                out[table] = [tuple(row[c] for c in columns) for row in rows]
            head = conn.execute("SELECT count, head_hash, key_id FROM audit_head WHERE id = 1"
                                ).fetchone()
        if head is None:
            raise StateError(f"the audit head row is missing in {self.location}",
                             hint="run `bluegreen audit verify` on the source")
        return out, (int(head["count"]), str(head["head_hash"]), head["key_id"])

    def load(self, rows: Dump, head: tuple[int, str, str | None], *,
             audit: AuditEntryInput) -> None:
        """Insert `rows` and the head into this store, which must be empty, then append
        `audit` (what was copied from where) to the copied chain: one transaction."""
        with self._write() as conn:
            for table in COLUMNS:
                if conn.execute(f"SELECT 1 FROM {table} LIMIT 1").fetchone() is not None:
                    raise StateError(
                        f"{self.location} is not empty (table {table} has rows): a copy "
                        "never merges two stores",
                        hint="copy into a new, migrated database (`bluegreen state migrate`)",
                    )
            for table, columns in COLUMNS.items():
                sql = (f"INSERT INTO {table} ({', '.join(columns)}) VALUES "
                       f"({', '.join('?' for _ in columns)})")
                for row in rows[table]:
                    conn.execute(sql, row)
            conn.execute("UPDATE audit_head SET count = ?, head_hash = ?, key_id = ? WHERE id = 1",
                         head)
            self._audit(conn, audit, self._now())
