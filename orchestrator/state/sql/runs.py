"""Runs and their journal in SQL: a run is created "running", every step is journaled
before ("begin") and after ("end") it runs, and the run ends with a final status; all of it
audited as the run's actor. A run's own writes are fenced by the epoch of its lock
(`fence.Fencing`): once another process took the lock over, they are refused."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

from orchestrator.errors import Fenced, LockHeld, StateError
from orchestrator.state.audit import canonical_json, format_ts
from orchestrator.state.models import (
    RESUMABLE_STATUSES,
    AuditEntryInput,
    JournalEntry,
    JournalPhase,
    Run,
    RunStatus,
)
from orchestrator.state.sql.database import Connection
from orchestrator.state.sql.fence import Fencing
from orchestrator.state.sql.rows import clean, journal_from_row, run_from_row, text


class RunRows(Fencing):
    """`RunStore`."""

    def create_run(
        self,
        run_id: str,
        kind: str,
        service: str | None,
        params: dict[str, Any],
        actor: str,
        *,
        reason: str | None = None,
        exclusive_of: Mapping[str, Any] | None = None,
    ) -> Run:
        """Start a run (status "running"); `params` are stored redacted. It records the
        epoch of the lock this store took for `run_id`, if any. `exclusive_of`: refuse
        (LockHeld), in the same transaction, when an unfinished run of the same kind has
        these params (e.g. {"name": CAMPAIGN}: two interleaved starts leave one run)."""
        fence = self.fence_of(run_id)
        run = Run(
            run_id=run_id,
            kind=kind,
            service=service,
            status="running",
            params=clean(params),
            actor=actor,
            started_at=self._now(),
            epoch=fence[1] if fence else None,
        )
        with self._write() as conn:
            if conn.execute("SELECT 1 FROM runs WHERE run_id = ?", (run_id,)).fetchone():
                raise StateError(
                    f"run {run_id} already exists in {self.location}", hint="use a new run id"
                )
            if exclusive_of:
                self._refuse_twin(conn, kind, exclusive_of)
            if fence is not None:
                self._check_fence(conn, fence[0], run_id, fence[1], ended_too=False)
            conn.execute(
                "INSERT INTO runs (run_id, kind, service, status, params, actor, started_at,"
                " epoch) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    run_id,
                    kind,
                    service,
                    run.status,
                    canonical_json(run.params),
                    actor,
                    format_ts(run.started_at),
                    run.epoch,
                ),
            )
            self._touch(conn, "runs", run_id)
            entry = AuditEntryInput(
                actor=actor, command="run.create", service=service, reason=reason
            )
            self._audit(
                conn,
                entry,
                run.started_at,
                after={"run_id": run_id, "kind": kind, "status": run.status, "params": run.params},
            )
        return run

    def _refuse_twin(self, conn: Connection, kind: str, params: Mapping[str, Any]) -> None:
        rows = conn.execute(
            f"SELECT * FROM runs WHERE kind = ? AND status IN"
            f" ({', '.join('?' for _ in RESUMABLE_STATUSES)})"
            f" ORDER BY started_at, {self.INSERT_ORDER}",
            (kind, *RESUMABLE_STATUSES),
        ).fetchall()
        for row in rows:
            other = run_from_row(row)
            if all(other.params.get(k) == v for k, v in params.items()):
                what = " ".join(f"{k} {v}" for k, v in params.items())
                raise LockHeld(
                    f"{kind} {what} already has an unfinished run {other.run_id} "
                    f"({other.status}, started {format_ts(other.started_at)} by {other.actor})",
                    hint=f"resume it (`bluegreen {kind} resume`) or abort it "
                    f"(`bluegreen {kind} abort`)",
                )

    def get_run(self, run_id: str) -> Run | None:
        rows = self._query("SELECT * FROM runs WHERE run_id = ?", (run_id,))
        return run_from_row(self._checked("runs", rows[0])) if rows else None

    def list_runs(self, service: str | None = None, status: RunStatus | None = None) -> list[Run]:
        """Runs, oldest first, optionally filtered by service and status."""
        conditions = {"service": service, "status": status}
        used = {column: value for column, value in conditions.items() if value is not None}
        where = " AND ".join(f"{column} = ?" for column in used)
        rows = self._query(
            f"SELECT * FROM runs{f' WHERE {where}' if where else ''}"
            f" ORDER BY started_at, {self.INSERT_ORDER}",
            tuple(used.values()),
        )
        return [run_from_row(row) for row in rows]

    def latest_unfinished_run(self, service: str) -> Run | None:
        """The newest run of `service` that is still "running" (killed?) or "deferred"."""
        rows = self._query(
            f"SELECT * FROM runs WHERE service = ? AND status IN"
            f" ({', '.join('?' for _ in RESUMABLE_STATUSES)})"
            f" ORDER BY started_at DESC, {self.INSERT_ORDER} DESC LIMIT 1",
            (service, *RESUMABLE_STATUSES),
        )
        return run_from_row(self._checked("runs", rows[0])) if rows else None

    def finish_run(self, run_id: str, status: RunStatus, result: str | None) -> Run:
        """End a running or deferred run. A run that already ended cannot be finished again."""
        if status == "running":
            raise ValueError("finish_run needs a final status, not 'running'")
        now = self._now()
        with self._write() as conn:
            run = self._resumable_run(conn, run_id)
            self._check_run_fence(conn, run_id)
            result = text(result)
            conn.execute(
                "UPDATE runs SET status = ?, finished_at = ?, result = ? WHERE run_id = ?",
                (status, format_ts(now), result, run_id),
            )
            self._touch(conn, "runs", run_id)
            entry = AuditEntryInput(
                actor=run.actor, command="run.finish", service=run.service, result=status
            )
            self._audit(
                conn,
                entry,
                now,
                before={"run_id": run_id, "status": run.status},
                after={"run_id": run_id, "status": status, "result": result},
            )
        return dataclasses.replace(run, status=status, finished_at=now, result=result)

    def _resumable_run(self, conn: Connection, run_id: str) -> Run:
        row = conn.execute("SELECT * FROM runs WHERE run_id = ?", (run_id,)).fetchone()
        if row is None:
            raise StateError(f"run {run_id} does not exist in {self.location}")
        run = run_from_row(self._checked("runs", row))
        if run.status not in RESUMABLE_STATUSES:
            fenced = self.fence_of(run_id) is not None and run.status in ("aborted", "abandoned")
            raise (Fenced if fenced else StateError)(
                f"run {run_id} already ended with status {run.status!r}"
                + (f" ({run.result}); nothing recorded" if fenced else ""),
                hint="start a new run instead",
            )
        return run

    def journal_begin(
        self, run_id: str, step: str, data: dict[str, Any] | None = None
    ) -> JournalEntry:
        """Write "about to run `step`" before doing it; audited as the run's actor."""
        return self._journal(run_id, step, "begin", data)

    def journal_end(
        self, run_id: str, step: str, data: dict[str, Any] | None = None
    ) -> JournalEntry:
        """Write "`step` finished" (put its outcome in `data`). The step must be begun."""
        return self._journal(run_id, step, "end", data)

    def _journal(
        self, run_id: str, step: str, phase: JournalPhase, data: dict[str, Any] | None
    ) -> JournalEntry:
        now = self._now()
        with self._write() as conn:
            run = self._resumable_run(conn, run_id)
            self._check_run_fence(conn, run_id)
            if phase == "end":
                last = conn.execute(
                    "SELECT phase FROM journal WHERE run_id = ? AND step = ?"
                    " ORDER BY seq DESC LIMIT 1",
                    (run_id, step),
                ).fetchone()
                if last is None or last["phase"] != "begin":
                    raise StateError(f"step {step!r} of run {run_id} was not begun, cannot end it")
            seq = conn.execute(
                "SELECT COALESCE(MAX(seq), 0) + 1 AS next_seq FROM journal WHERE run_id = ?",
                (run_id,),
            ).fetchone()["next_seq"]
            entry = JournalEntry(
                run_id=run_id, seq=int(seq), step=step, phase=phase, data=clean(data or {}), at=now
            )
            conn.execute(
                "INSERT INTO journal (run_id, seq, step, phase, data, at) VALUES (?, ?, ?, ?, ?, ?)",
                (run_id, entry.seq, step, phase, canonical_json(entry.data), format_ts(now)),
            )
            audit = AuditEntryInput(
                actor=run.actor, command=f"journal.{phase}", service=run.service
            )
            self._audit(
                conn,
                audit,
                now,
                after={"run_id": run_id, "seq": entry.seq, "step": step, "data": entry.data},
            )
        return entry

    def journal(self, run_id: str) -> list[JournalEntry]:
        """All entries of a run in write order."""
        rows = self._query("SELECT * FROM journal WHERE run_id = ? ORDER BY seq", (run_id,))
        return [journal_from_row(row) for row in rows]

    def last_finished_step(self, run_id: str) -> str | None:
        """The step of the newest "end" entry: where a resumed run continues after."""
        rows = self._query(
            "SELECT step FROM journal WHERE run_id = ? AND phase = 'end' ORDER BY seq DESC LIMIT 1",
            (run_id,),
        )
        return str(rows[0]["step"]) if rows else None
