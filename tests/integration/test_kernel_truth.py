"""Issue 20 items 5 and 14 on the lab, through the real CLI, real HAProxy, real Ansible and
the real SQLite store: a reload between `set map` and persisting is no move (what is
recorded and said is where traffic is), and a flip the gate refuses aborts no rollout.
Each asserts traffic through the frontend, HAProxy's memory, the map file, the store and
the audit chain."""

from __future__ import annotations

import fcntl
import json
import os
from pathlib import Path

import pytest

from orchestrator.lab.lab import Lab
from tests.integration.test_kernel_scenarios import audit, traffic_on
from tests.reliability.helpers import fresh_web, journal_phases, start_cli, state_db, stop, wait_for
from tests.support.cli import bluegreen_json
from tests.support.lab import no_steps_config, router_live, slow_patch_config

pytestmark = [pytest.mark.lab, pytest.mark.destructive]

WEB = "web"


def test_a_reload_between_set_and_persist_and_a_refused_flip_during_a_rollout(
    lab: Lab, tmp_path: Path
) -> None:
    fresh_web(lab)
    config = no_steps_config(lab)
    assert router_live(lab, WEB) == "web_blue"

    # item 5: the map's lock held while the flip persists; HAProxy reloads meanwhile
    lock = os.open(f"{lab.paths.map_file}.lock", os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(lock, fcntl.LOCK_EX)
        proc = start_cli(config, "flip", WEB, "--to", "green", "--force", "--reason", "INC-5")
        try:
            wait_for(lambda: router_live(lab, WEB) == "web_green", 60, "set map to green")
            lab.reload_haproxy()  # memory back to the map file: blue
            wait_for(lambda: router_live(lab, WEB) == "web_blue", 30, "the reload")
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)
        out, err = proc.communicate(timeout=120)
    finally:
        os.close(lock)
    assert proc.returncode == 1, (out, err)
    assert "did not hold" in err and "traffic is on blue" in err, err
    assert "traffic is on green" not in err, err
    st = traffic_on(lab, config, "blue")
    assert st["flip_problem"] is None and st["pending_flip"] is None, st
    assert ("flip", "ok") not in audit(config) and ("flip", "incomplete") not in audit(config)
    assert ("flip.failed", "failed") in audit(config)
    lab.reload_haproxy()
    traffic_on(lab, config, "blue")

    # item 14: a flip the gate refuses while a rollout patches green aborts nothing
    slow = slow_patch_config(config, tmp_path, seconds=20)
    rollout = start_cli(slow, "rollout", WEB, "--yes", "--json")
    try:
        wait_for(lambda: ("patch", "begin") in journal_phases(state_db(lab)), 180,
                 "the rollout's patch step")
        code, doc = bluegreen_json(config, "flip", WEB, "--to", "green", "--reason", "INC-14")
        assert code == 3 and "patching" in doc["error"], doc
        assert "was not aborted" in doc["error"], doc
        assert "resume" not in json.dumps(doc.get("hint")) or "not finished" in doc["hint"], doc
        code, st = bluegreen_json(config, "status", WEB)
        assert code == 0 and st["run_in_flight"]["status"] == "running", st
        assert rollout.poll() is None  # the rollout goes on
        # an operator's rollback stops it before its flip; traffic stays
        code, doc = bluegreen_json(config, "rollback", WEB, "--reason", "INC-14 stop")
        assert code == 0 and not doc["changed"] and doc["aborted_run"], doc
        rollout.communicate(timeout=300)
    finally:
        stop(rollout)
    traffic_on(lab, config, "blue")
