"""Zero dropped requests while traffic flips 20 times and rolls back 20 times, under
continuous load through HAProxy (our bounded load generator, loopback only)."""

from __future__ import annotations

import pytest

from benchmarks.flip_load import flip_under_load
from orchestrator.lab.lab import Lab
from tests.reliability.helpers import FIGURES, WEB
from tests.support.lab import assert_consistent, reset_state_dir

pytestmark = [pytest.mark.lab, pytest.mark.destructive]


def test_20_flips_and_20_rollbacks_under_load_drop_nothing(lab: Lab) -> None:
    lab.reset([h["name"] for h in lab.status()["hosts"] if h["service"] == WEB])
    reset_state_dir(lab)
    out = flip_under_load(lab.paths.config, WEB, cycles=20, workers=4)
    FIGURES["load"].append(
        {
            "label": f"{out['flips']} flips + {out['rollbacks']} rollbacks",
            "sent": out["sent"],
            "failed": out["failed"],
            "p50_ms": out["p50_ms"],
            "p99_ms": out["p99_ms"],
            "flips": out["flips"] + out["rollbacks"],
            "seconds": out["seconds"],
        }
    )
    assert out["flips"] == 20 and out["rollbacks"] == 20
    assert out["sent"] > 500, out
    assert out["failed"] == 0, out["errors"]
    # both sides really took traffic
    assert out["backends"].get("web_blue", 0) > 0 and out["backends"].get("web_green", 0) > 0
    st = assert_consistent(lab, lab.paths.config)
    assert st["live"] == "blue"
