"""Shared helpers of the reliability suite: lab inspection, consistency checks, figures.

`FIGURES` collects what the suite measured; `conftest.pytest_terminal_summary` prints it.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import statistics
import subprocess
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

from orchestrator.lab.lab import Lab, haproxy_command
from tests.support.cli import BLUEGREEN, bluegreen_json

FIGURES: dict[str, Any] = {
    "kill_points": [],  # (label, ok)
    "faults": [],  # (name, exit code, outcome)
    "load": [],  # dicts: sent, failed, p50_ms, p99_ms, flips
    "corpus": 0,
    "corpus_ok": 0,
}

WEB = "web"


def hosts_of(lab: Lab, service: str, side: str | None = None) -> list[str]:
    return [
        h["name"]
        for h in lab.status()["hosts"]
        if h["service"] == service and (side is None or h["side"] == side)
    ]


def fingerprint(lab: Lab, host: str) -> str:
    """What must not change on a live host: dpkg database, demo files, demo-web's PID."""
    out = lab.exec(
        host,
        [
            "sh",
            "-c",
            "md5sum /var/lib/dpkg/status /usr/lib/demo-openssl/libdemossl.so.3 "
            "/usr/lib/demo-web/server.py; systemctl show -p MainPID demo-web",
        ],
    ).stdout
    return hashlib.sha256(out.encode()).hexdigest()


def fingerprints(lab: Lab, hosts: list[str]) -> dict[str, str]:
    return {h: fingerprint(lab, h) for h in hosts}


def versions(lab: Lab, host: str) -> dict[str, str]:
    out = lab.exec(
        host, ["dpkg-query", "-W", "-f=${Package} ${Version}\\n", "demo-web", "demo-openssl"]
    ).stdout
    return dict(line.split() for line in out.splitlines())


def served_by(lab: Lab, service: str) -> str:
    url = lab.status()["frontends"][service] + "/version"
    with urllib.request.urlopen(url, timeout=5) as r:
        return str(json.loads(r.read())["side"])


def router_live(lab: Lab, service: str) -> str:
    """The live backend straight from HAProxy's memory (not through bluegreen)."""
    out = haproxy_command(lab.paths.haproxy_socket, f"show map {lab.paths.map_file}")
    for line in out.splitlines():
        parts = line.split()
        if len(parts) >= 3 and parts[1] == service:
            return parts[2]
    raise AssertionError(f"no map entry for {service}: {out!r}")


def reset_state_dir(lab: Lab) -> None:
    state_dir = lab.paths.root / "state"
    if state_dir.exists():
        shutil.rmtree(state_dir)
    state_dir.mkdir(mode=0o700)


def fresh_web(lab: Lab) -> None:
    """Only what a web test changes: the web hosts, the router (back to blue), the state."""
    lab.reset(hosts_of(lab, WEB))
    reset_state_dir(lab)


def assert_consistent(lab: Lab, config: Path, service: str = WEB) -> dict[str, Any]:
    """Router and state agree, no lock, no run in flight, traffic on a trusted side, audit ok."""
    code, st = bluegreen_json(config, "status", service)
    assert code == 0, st
    assert st["agrees"], st
    assert st["lock"] is None, st
    assert st["run_in_flight"] is None, st
    assert served_by(lab, service) == st["live"]
    live_side = st["sides"][st["live"]]
    if live_side["patch_level"] or live_side["verified_at"]:
        assert live_side["verified_after_patch"], f"traffic on an unverified side: {st}"
    code, doc = bluegreen_json(config, "audit", "verify")
    assert code == 0 and doc["ok"], doc
    return dict(st)


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
