"""`lab down` leaves nothing behind, also after a crashed `up`; a second `up` changes nothing.

Runs last in its module order on purpose: it takes the session's lab down and up again.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from orchestrator.lab import net
from orchestrator.lab.lab import Lab, _lab_processes

pytestmark = pytest.mark.lab


def leftovers(lab: Lab) -> list[str]:
    root = str(lab.paths.root)
    found = net.leftovers(lab.paths)
    found += [f"process {p}" for p in _lab_processes(lab.paths.root)]
    with open("/proc/mounts") as f:
        found += [f"mount {line.split()[1]}" for line in f if root + "/" in line.split()[1]
                  or f"upperdir={root}/" in line]
    if lab.paths.root.exists():
        found.append(f"dir {root}")
    return found


def test_second_up_changes_nothing(lab: Lab) -> None:
    before = lab.load()
    result = lab.up()
    assert result.changed is False
    assert lab.load() == before


def test_down_after_crashed_up_leaves_nothing_and_up_works_again(lab: Lab) -> None:
    lab.down()
    assert leftovers(lab) == []
    # crash an `up` half-way: kill -9 once hosts are booting
    env = {**os.environ, "BLUEGREEN_LAB_INSTANCE": str(lab.paths.instance)}
    proc = subprocess.Popen([sys.executable, "-m", "orchestrator", "lab", "up"], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        hosts_dir = lab.paths.hosts
        if hosts_dir.exists() and len(list(hosts_dir.iterdir())) >= 3:
            break
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=10)
    assert leftovers(lab), "the crashed up left nothing to clean: the test did not crash it"
    started = time.monotonic()
    result = lab.down()
    assert result["leftovers"] == []
    assert time.monotonic() - started < 10
    assert leftovers(lab) == []
    up = lab.up()
    assert up.changed and not up.status["problems"]
    assert all(h["running"] for h in up.status["hosts"])


def test_cli_lab_status_json_has_what_tools_need(lab: Lab) -> None:
    out = subprocess.run([sys.executable, "-m", "orchestrator", "lab", "status", "--json"],
                         capture_output=True, text=True, check=True,
                         env={**os.environ, "BLUEGREEN_LAB_INSTANCE": str(lab.paths.instance)})
    import json

    doc = json.loads(out.stdout)
    for key in ("config", "inventory", "ssh_config", "known_hosts", "hosts", "frontends",
                "haproxy_socket"):
        assert key in doc
    assert {"name", "service", "side", "address"} <= set(doc["hosts"][0])
    assert Path(doc["config"]).exists()
