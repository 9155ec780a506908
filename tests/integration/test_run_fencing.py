"""Runs own their service through run epochs (issue 20, scenarios 6 and 7) on the lab,
through the real CLI, real HAProxy, real Ansible and the real SQLite store: a lock is never
taken from a live holder, a holder's late writes are refused, a takeover abandons the stale
run. Each asserts where traffic is (frontend, HAProxy's memory, the map file, the store)
and that the audit chain verifies."""

from __future__ import annotations

import contextlib
import json
import os
import signal
from pathlib import Path
from typing import Any

import pytest
import yaml

from orchestrator.lab.lab import Lab
from tests.integration.test_kernel_scenarios import audit, traffic_on
from tests.reliability.helpers import fresh_web, journal_phases, start_cli, state_db, stop, wait_for
from tests.support.cli import bluegreen_json
from tests.support.lab import FIXED, no_steps_config, quick_bake_config, slow_patch_config

pytestmark = [pytest.mark.lab, pytest.mark.destructive]

WEB = "web"


def history(config: Path) -> list[dict[str, Any]]:
    code, hist = bluegreen_json(config, "history", WEB, "--limit", "10000")
    assert code == 0, hist
    return list(hist)


# -- 7. a killed rollout never resumed is taken over; a later rollback still flips -----------


def test_7_a_killed_run_is_abandoned_by_the_takeover_and_a_rollback_still_flips(
    lab: Lab, tmp_path: Path
) -> None:
    fresh_web(lab)
    config = no_steps_config(lab)
    # R1 flips to green and is killed (-9) as its bake begins: never resumed
    proc = start_cli(config, "rollout", WEB, "--yes", "--json",
                     env={"BLUEGREEN_FAILPOINT": "bake:begin"})
    try:
        proc.communicate(timeout=600)
        assert proc.returncode == -signal.SIGKILL, proc.returncode
    finally:
        stop(proc)
    code, st = bluegreen_json(config, "status", WEB)
    first = st["run_in_flight"]["run_id"]
    assert st["lock"]["epoch"] == 1 and st["live"] == "green", st
    # R2 takes the lock over (epoch 2): R1 is abandoned; R2 patches blue and flips to it
    code, doc = bluegreen_json(quick_bake_config(config, tmp_path), "rollout", WEB, "--yes",
                               timeout=900)
    assert code == 0 and doc["to"] == "blue", doc
    st = traffic_on(lab, config, "blue")
    assert st["run_in_flight"] is None and st["lock"] is None, st
    assert st["last_abandoned"]["run_id"] == first, st
    assert f"{doc['run_id']} took the lock over (epoch 2)" in st["last_abandoned"]["result"]
    commands = audit(config)
    assert ("lock.takeover", "ok") in commands and ("run.abandon", "abandoned") in commands
    code, out = bluegreen_json(config, "resume", first)
    assert code == 2 and "was abandoned" in out["error"], out
    # live is blue again, as R1's precheck saw it: the incident's rollback must still go
    # back (to green, live before R2's flip), not answer "R1 had not flipped yet"
    code, out = bluegreen_json(config, "rollback", WEB, "--reason", "INC-7 incident")
    assert code == 0 and out["changed"] and out["to"] == "green", out
    st = traffic_on(lab, config, "green")
    assert st["sides"]["blue"]["state"] == "failed_live", st


# -- 6. campaign abort while its child's Ansible runs, then a second rollout ------------------


def descendants(pid: int) -> list[str]:
    """Command names of every process below `pid` (from /proc)."""
    return [cmdline for _, cmdline in descendant_processes(pid)]


def descendant_processes(pid: int) -> list[tuple[int, str]]:
    """(pid, command line) of every process below `pid` (from /proc)."""
    parents: dict[int, list[int]] = {}
    names: dict[int, str] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        parents.setdefault(ppid, []).append(int(entry.name))
        names[int(entry.name)] = cmdline
    found: list[tuple[int, str]] = []
    todo = list(parents.get(pid, []))
    while todo:
        child = todo.pop()
        found.append((child, names.get(child, "")))
        todo.extend(parents.get(child, []))
    return found


def test_6_campaign_abort_keeps_the_live_childs_lock_and_refuses_its_late_write(
    lab: Lab, tmp_path: Path
) -> None:
    """The campaign's process is paused (SIGSTOP: a hung or slow holder) right after the
    abort, while its child's Ansible works on green: the lock stays with it, so a second
    rollout cannot start Ansible there; when the holder wakes up after its playbook ended,
    the child's late write (the patch's record) is refused and nothing is recorded. The test
    ends the playbook itself: a stopped holder does not read the playbook's output (ansible-
    runner's pty), so the playbook blocks on it and would end only minutes later."""
    fresh_web(lab)
    config = slow_patch_config(no_steps_config(lab), tmp_path, seconds=6)
    camp = tmp_path / "fenced.yml"
    camp.write_text(yaml.safe_dump({
        "name": "fenced", "window": {"always": True}, "waves": [{"services": [WEB]}],
        "advisories": [{"id": "DEMO-1", "cves": ["CVE-2026-0001"], "severity": "high",
                        "packages": dict(FIXED)}],
    }))
    proc = start_cli(config, "campaign", "run", str(camp), "--yes", "--json")
    try:
        wait_for(lambda: ("patch", "begin") in journal_phases(state_db(lab))
                 or proc.poll() is not None, 180, "the child's patch step")
        assert proc.poll() is None, proc.communicate()
        wait_for(lambda: any("ansible-playbook" in c for c in descendants(proc.pid)), 60,
                 "the child's ansible-playbook")
        os.kill(proc.pid, signal.SIGSTOP)
        code, doc = bluegreen_json(config, "campaign", "abort", "fenced", "--reason", "stop")
        assert code == 0 and len(doc["aborted_children"]) == 1, doc
        child = doc["aborted_children"][0]
        # the abort freed nothing: the child keeps its lock until it stops
        assert doc["still_stopping"] and f"pid {proc.pid}" in doc["still_stopping"][0], doc
        code, second = bluegreen_json(no_steps_config(lab), "rollout", WEB, "--yes")
        assert code == 5 and child in second["error"], second  # no second Ansible on green
        for leash, _ in [p for p in descendant_processes(proc.pid) if "leash.py" in p[1]]:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(leash, signal.SIGKILL)  # the leash leads the playbook's group
        wait_for(lambda: not any("ansible-playbook" in c for c in descendants(proc.pid)), 180,
                 "the child's playbook to end")
        os.kill(proc.pid, signal.SIGCONT)
        out, err = proc.communicate(timeout=300)
    finally:
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGCONT)
        stop(proc)
    assert proc.returncode != 0, (out, err)
    # its late write (the patch's record, after Ansible) was refused: green stays patching
    code, st = bluegreen_json(no_steps_config(lab), "status", WEB)
    assert st["sides"]["green"]["state"] == "patching" and st["lock"] is None, st
    hist = history(no_steps_config(lab))
    aborted = next(i for i, r in enumerate(hist) if r["command"] == "run.finish"
                   and r["result"] == "aborted" and r["before"]["run_id"] == child)
    late = [r["command"] for r in hist[aborted + 1:] if r["reason"] == f"run {child}"
            or (r["command"].startswith("journal.") and r["after"].get("run_id") == child)]
    assert not late, late
    assert "lock.force_release" not in [r["command"] for r in hist]
    traffic_on(lab, no_steps_config(lab), "blue")
    code, second = bluegreen_json(quick_bake_config(no_steps_config(lab), tmp_path), "rollout", WEB,
                                  "--yes", timeout=900)
    assert code == 0 and second["to"] == "green", json.dumps(second)
    traffic_on(lab, no_steps_config(lab), "green")
