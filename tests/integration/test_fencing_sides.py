"""Issue 20's side-state scenarios on the lab, through the real CLI (real HAProxy, real
Ansible, the real SQLite store): a quarantine is one kernel operation (1, 2), a rollout's
patch cannot lift it (3), and a flip binds to the verification it relies on (8). Each
asserts where traffic is (a request through the frontend, HAProxy's map in memory and on
disk, `status --json`) and that the audit chain verifies."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from orchestrator.lab.lab import Lab
from tests.integration.test_campaign import write_campaign
from tests.integration.test_kernel_scenarios import (
    audit,
    during_patch,
    rollout_to_green,
    traffic_on,
)
from tests.reliability.helpers import fresh_web, stop
from tests.support.cli import bluegreen, bluegreen_json
from tests.support.lab import no_steps_config

pytestmark = [pytest.mark.lab, pytest.mark.destructive]

WEB = "web"


def sides(config: Path) -> dict[str, Any]:
    code, st = bluegreen_json(config, "status", WEB)
    assert code == 0, st
    return dict(st["sides"])


def test_a_quarantine_is_one_operation_and_no_patch_lifts_it(lab: Lab, tmp_path: Path) -> None:
    fresh_web(lab)
    config = no_steps_config(lab)
    rollout_to_green(config)  # green patched, verified, live; blue is the rollback side

    # 2: the quarantine of the live side is killed after the router moved, before its
    # record; an operator's rollback comes next: it records the flip AND the mark (one
    # transaction), then refuses to send traffic back to the suspect side
    killed = bluegreen(config, "quarantine", WEB, "--side", "green", "--reason", "INC-2 key",
                       env={"BLUEGREEN_FAILPOINT": "traffic:router:quarantine"})
    assert killed.returncode == -9, killed.stderr
    code, doc = bluegreen_json(config, "rollback", WEB, "--reason", "INC-2 operator")
    assert code == 3 and "quarantined" in doc["error"], doc
    st = traffic_on(lab, config, "blue")
    assert st["sides"]["green"]["state"] == "quarantined", st
    assert ("quarantine", "recovered") in audit(config)

    # 3: a rollout patches green (a patch begun after the quarantine is the way out) and
    # is quarantined again while Ansible runs: the mark stands, the run stops, nothing flips
    proc = during_patch(lab, config, tmp_path)
    try:
        code, out = bluegreen_json(config, "quarantine", WEB, "--side", "green", "--reason",
                                   "INC-3 forensics")
        assert code == 0 and out["changed"] and out["flip"] is None, out
        assert "aborted run" in out["message"], out
        text, _ = proc.communicate(timeout=300)
        assert proc.returncode != 0 and "abort" in json.loads(text)["error"], text
    finally:
        stop(proc)
    st = traffic_on(lab, config, "blue")
    assert st["sides"]["green"]["state"] == "quarantined", st
    assert "INC-3" in st["sides"]["green"]["reason"], st
    assert st["lock"] is None and st["run_in_flight"] is None, st

    # 1: a rollout's flip is past its gate (intent journaled) when it dies; the quarantine
    # of its target takes the traffic lock, ends the intent (the router had not moved),
    # marks green and aborts the run: its resume cannot flip there
    killed = bluegreen(config, "rollout", WEB, "--yes",
                       env={"BLUEGREEN_FAILPOINT": "traffic:intent:rollout.flip"}, timeout=900)
    assert killed.returncode == -9, killed.stderr
    code, out = bluegreen_json(config, "quarantine", WEB, "--side", "green", "--reason",
                               "INC-1 during the flip")
    assert code == 0 and out["changed"] and out["flip"] is None, out
    resumed = bluegreen(config, "resume")  # the quarantine aborted the run: nothing to do
    assert "nothing to resume" in resumed.stdout, (resumed.stdout, resumed.stderr)
    st = traffic_on(lab, config, "blue")
    assert st["sides"]["green"]["state"] == "quarantined", st
    assert ("rollout.flip.failed", "cancelled") in audit(config)


def test_a_resumed_flip_is_refused_when_the_side_changed_since_its_verification(
    lab: Lab, tmp_path: Path
) -> None:
    """8: a campaign child verified blue and waits (approval before the flip); `rebuild`
    re-images blue at the live side's versions and its own gate passes; the resumed
    child's flip is refused: blue is not the patch the campaign verified."""
    fresh_web(lab)
    config = no_steps_config(lab)
    rollout_to_green(config)  # green live and fixed: a rebuild of blue passes its gate
    camp = write_campaign(tmp_path, "fenced", waves=[{"services": ["web"]}],
                          approval={"mode": "manual", "at": "before_flip"})
    alice, bob = {"SUDO_USER": "alice"}, {"SUDO_USER": "bob"}
    code, doc = bluegreen_json(config, "campaign", "run", str(camp), "--yes", env=alice)
    assert code == 0 and doc["status"] == "awaiting_approval", doc
    verified = sides(config)["blue"]
    assert verified["state"] == "verified", verified
    code, doc = bluegreen_json(config, "rebuild", WEB, "--side", "blue", "--reason",
                               "overnight rebuild")
    assert code == 0 and doc["ok"], doc
    rebuilt = sides(config)["blue"]
    assert rebuilt["state"] == "verified" and rebuilt["generation"] > verified["generation"]
    code, ok = bluegreen_json(config, "--actor", "bob", "campaign", "approve", "fenced",
                              env=bob)
    assert code == 0, ok
    code, doc = bluegreen_json(config, "campaign", "resume", "fenced")
    assert code != 0 and doc["services"]["web"]["status"] == "failed", doc
    code, hist = bluegreen_json(config, "history", WEB, "--limit", "10000")
    ended = [r["after"]["result"] for r in hist
             if r["command"] == "run.finish" and r["result"] == "failed"]
    assert "changed since the verification this flip relies on" in ended[-1], ended
    st = traffic_on(lab, config, "green")
    assert st["sides"]["blue"]["patch_level"] == rebuilt["patch_level"], st
    assert audit(config).count(("rollout.flip", "ok")) == 1  # the first rollout's only
