"""`unlock`: a lock is freed only when its holder is gone; a holder that may live has its
run marked aborted, and whatever it records afterwards is refused (run epochs)."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from orchestrator.errors import BadInput, Fenced
from orchestrator.state import LockHolder, SQLiteStateStore
from orchestrator.traffic.unlock import unlock
from tests.unit.state.test_store import dead_pid


def holding(path: Path, holder: LockHolder | None = None) -> SQLiteStateStore:
    """A run's own store (another process, as far as the store can tell)."""
    store = SQLiteStateStore(path)
    store.acquire_lock("web", "r1", holder)
    store.create_run("r1", "rollout", "web", {}, "ci")
    return store


def test_a_gone_holders_lock_is_freed_and_its_run_stays_resumable(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    ghost = LockHolder(holder="ci@here", pid=dead_pid(), hostname=socket.gethostname())
    with holding(path, ghost), SQLiteStateStore(path) as operator:
        with pytest.raises(BadInput):
            unlock(operator, "web", " ", "oncall")
        out = unlock(operator, "web", "holder died", "oncall")
        assert out.released and out.aborted_run is None and "was gone" in out.message
        assert operator.get_lock("web") is None
        assert operator.get_run("r1").status == "running"  # type: ignore[union-attr]
        assert unlock(operator, "web", "again", "oncall").message == "web: not locked"


def test_a_live_holder_keeps_its_lock_and_its_run_is_aborted(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    with holding(path) as run, SQLiteStateStore(path) as operator:
        out = unlock(operator, "web", "INC-1 stuck", "oncall")
        assert not out.released and out.aborted_run == "r1"
        assert "is alive: it stops at its next step boundary" in out.message
        lock = operator.get_lock("web")
        assert lock is not None and lock.run_id == "r1"
        aborted = operator.get_run("r1")
        assert aborted is not None and aborted.status == "aborted"
        assert "unlock by oncall: INC-1 stuck" in (aborted.result or "")
        with pytest.raises(Fenced, match="already ended with status 'aborted'"):
            run.journal_begin("r1", "flip")  # its next boundary: refused, nothing recorded


def test_a_holder_on_another_host_is_taken_as_gone_and_fenced(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    remote = LockHolder(holder="ci@other", pid=4242, hostname="other-host.invalid")
    with holding(path, remote) as run, SQLiteStateStore(path) as operator:
        out = unlock(operator, "web", "host died", "oncall")
        assert out.released and out.aborted_run == "r1"
        assert operator.get_lock("web") is None
        with pytest.raises(Fenced):
            run.finish_run("r1", "done", "late")

