"""Shared helpers of the reliability suite: lab inspection, consistency checks, figures.

`FIGURES` collects what the suite measured; `conftest.pytest_terminal_summary` prints it.
"""

from __future__ import annotations

import os
import signal
import statistics
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from orchestrator.lab.lab import Lab
from tests.support.cli import BLUEGREEN
from tests.support.lab import hosts_of, reset_state_dir

FIGURES: dict[str, Any] = {
    "kill_points": [],  # (label, ok)
    "faults": [],  # (name, exit code, outcome)
    "load": [],  # dicts: sent, failed, p50_ms, p99_ms, flips
    "corpus": 0,
    "corpus_ok": 0,
    "hostile_hosts": [],  # (scenario, ok): a compromised fleet host (test_hostile_hosts)
    "hostile_hosts_tried": 0,  # how many scenarios it has (0: the test did not run)
    "db_writer": 0,  # corpus cases of a database writer without the audit key (kind=state)
    "db_writer_ok": 0,
}

WEB = "web"


def fresh_web(lab: Lab) -> None:
    """Only what a web test changes: the web hosts, the router (back to blue), the state."""
    lab.reset(hosts_of(lab, WEB))
    reset_state_dir(lab)


def start_cli(config: Path, *args: str, env: dict[str, str] | None = None) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [*BLUEGREEN, "-c", str(config), *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, **(env or {})},
    )


def stop(proc: subprocess.Popen[str]) -> None:
    """Kill a CLI subprocess we started (by its PID) and reap it."""
    if proc.poll() is None:
        os.kill(proc.pid, signal.SIGKILL)
    proc.communicate(timeout=30)


def state_db(lab: Lab) -> Path:
    return lab.paths.root / "state" / "state.db"


def journal_phases(db: Path) -> set[tuple[str, str]]:
    """(step, phase) of the running rollout's journal, read through the store's own API."""
    if not db.exists():
        return set()
    from orchestrator.errors import StateError
    from orchestrator.state.sqlite import SQLiteStateStore

    try:
        with SQLiteStateStore(db, busy_timeout_ms=2000) as store:
            runs = store.list_runs(status="running")
            if not runs:
                return set()
            return {(e.step, e.phase) for e in store.journal(runs[-1].run_id)}
    except StateError:
        return set()


def wait_for(check: Callable[[], bool], timeout: float, what: str, poll: float = 0.1) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(poll)
    raise AssertionError(f"timed out after {timeout:g}s waiting for {what}")


def percentile(values: list[float], pct: float) -> float:
    if not values:
        return 0.0
    ordered = sorted(values)
    k = max(0, min(len(ordered) - 1, round(pct / 100 * (len(ordered) - 1))))
    return ordered[k]


def median(values: list[float]) -> float:
    return statistics.median(values) if values else 0.0
