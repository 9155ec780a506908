"""kill -9 the orchestrator at every journaled step boundary and at random points during
patching and baking, then `bluegreen resume`. After each kill point: router and state
agree, traffic is on a verified side (or the untouched original), the audit chain verifies,
no lock is left, and the live side was never modified.

Default run: a representative subset (8 points). BLUEGREEN_RELIABILITY_FULL=1: all 11
boundaries + 10 random points (21). BLUEGREEN_RELIABILITY_SEED fixes the random points.
"""

from __future__ import annotations

import os
import random
import signal
import time
from dataclasses import dataclass

import pytest

from orchestrator.lab.lab import Lab
from tests.reliability.helpers import (
    FIGURES,
    WEB,
    fresh_web,
    journal_phases,
    start_cli,
    state_db,
    stop,
    wait_for,
)
from tests.support.cli import bluegreen_json
from tests.support.lab import (
    assert_consistent,
    fingerprints,
    hosts_of,
    no_playbook_left,
    no_steps_config,
    versions,
)

pytestmark = [pytest.mark.lab, pytest.mark.destructive]

FULL = os.environ.get("BLUEGREEN_RELIABILITY_FULL") == "1"
SEED = int(os.environ.get("BLUEGREEN_RELIABILITY_SEED", "20260601"))
FIXED = {"demo-openssl": "3.0.15-1", "demo-web": "1.0.1"}

BOUNDARIES = [
    f"{step}:{phase}"
    for step in ("precheck", "patch", "verify", "flip", "bake")
    for phase in ("begin", "end")
]
# inside the flip step: the traffic kernel's failpoints of the rollout's own flip
BOUNDARIES[BOUNDARIES.index("flip:end"):BOUNDARIES.index("flip:end")] = [
    "traffic:intent:rollout.flip",
    "traffic:router:rollout.flip",
    "traffic:recorded:rollout.flip",
]
DEFAULT_BOUNDARIES = [
    "patch:begin",
    "verify:end",
    "flip:begin",
    "traffic:router:rollout.flip",
    "flip:end",
    "bake:begin",
]
# typical step lengths on the lab (s): a random kill lands inside the step. The patch step
# takes about 2 s since the lean playbook (measured 2-3 s with other tests beside it): its
# points stay inside the first 1.5 s, while Ansible works on the hosts.
STEP_SECONDS = {"patch": 1.6, "bake": 10.0}


@dataclass(frozen=True)
class KillPoint:
    label: str
    failpoint: str | None = None  # exact boundary (BLUEGREEN_FAILPOINT)
    step: str | None = None  # random point inside this step
    delay: float = 0.0

    def __str__(self) -> str:
        return self.label


def _kill_points() -> list[KillPoint]:
    rng = random.Random(SEED)
    randoms = [
        KillPoint(
            f"{step}+{delay:.1f}s",
            step=step,
            delay=delay,
        )
        for step in ("patch", "bake")
        for delay in sorted(round(rng.uniform(0.05, 0.9) * STEP_SECONDS[step], 1) for _ in range(5))
    ]
    bounds = [KillPoint(b, failpoint=b) for b in BOUNDARIES]
    if FULL:
        return bounds + randoms
    return [b for b in bounds if b.label in DEFAULT_BOUNDARIES] + [randoms[2], randoms[7]]


def _kill_during(lab: Lab, point: KillPoint) -> None:
    """Start a rollout and SIGKILL it when the point is reached; the process must die."""
    config = no_steps_config(lab)
    env = {"BLUEGREEN_FAILPOINT": point.failpoint} if point.failpoint else {}
    proc = start_cli(config, "rollout", WEB, "--yes", "--json", env=env)
    try:
        if point.step is not None:
            db = state_db(lab)
            wait_for(
                lambda: (point.step, "begin") in journal_phases(db) or proc.poll() is not None,
                60,
                f"the {point.step} step to begin",
                poll=0.05,
            )
            assert proc.poll() is None, proc.communicate()
            time.sleep(point.delay)
            assert (point.step, "end") not in journal_phases(db), (
                f"{point.step} ended before the kill; lower the delay"
            )
            os.kill(proc.pid, signal.SIGKILL)
        out, err = proc.communicate(timeout=120)
        assert proc.returncode == -signal.SIGKILL, (proc.returncode, out, err)
        # its playbook died with it: none patches beside the resume
        no_playbook_left(str(lab.paths.inventory))
    finally:
        stop(proc)


@pytest.mark.parametrize("point", _kill_points(), ids=str)
def test_kill_and_resume(lab: Lab, point: KillPoint) -> None:
    fresh_web(lab)
    config = no_steps_config(lab)
    blue, green = hosts_of(lab, WEB, "blue"), hosts_of(lab, WEB, "green")
    before = fingerprints(lab, blue)
    ok = False
    try:
        _kill_during(lab, point)
        code, st = bluegreen_json(config, "status", WEB)
        assert st["run_in_flight"] is not None, st  # the killed run is left resumable
        code, doc = bluegreen_json(config, "resume", timeout=300)
        assert code == 0, doc
        assert doc["status"] == "done" and doc["to"] == "green", doc
        st = assert_consistent(lab, config)
        assert st["live"] == "green" and st["sides"]["green"]["verified_after_patch"], st
        for h in green:
            assert versions(lab, h) == FIXED
        assert fingerprints(lab, blue) == before, "the live side changed during the run"
        # exactly one flip is recorded, even when the kill fell between router and store
        code, hist = bluegreen_json(config, "history", WEB, "--limit", "1000")
        flips = [r for r in hist if r["command"] == "rollout.flip"]
        assert len(flips) == 1, flips
        ok = True
    finally:
        FIGURES["kill_points"].append((point.label, ok))
