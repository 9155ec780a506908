"""The flip step's window (`may_flip`) is asked by the kernel under the traffic lock, right
before the router changes: a window that closes while the flip waits for the lock defers
it (issue 20, 11)."""

from __future__ import annotations

from pathlib import Path

import pytest

from orchestrator.errors import LockHeld, OutsideWindow
from orchestrator.rollout.runner import Rollout
from orchestrator.testing import FakeRouter, fake_config, fake_tools, temp_store


def test_a_window_that_closes_while_the_flip_waits_defers_it(tmp_path: Path) -> None:
    asked: list[bool] = []

    def may_flip(service: str) -> str | None:
        with temp_store(tmp_path) as other:  # another process: the lock is the flip's now
            try:
                with other.traffic_lock(service, 0.0):
                    asked.append(False)
            except LockHeld:
                asked.append(True)
        return "outside the maintenance window"  # it closed while the flip waited

    router = FakeRouter()
    with temp_store(tmp_path) as store:
        engine = Rollout(fake_config(tmp_path), store, router, actor="ci",
                         tools=fake_tools(), may_flip=may_flip)
        with pytest.raises(OutsideWindow, match="not flipping: outside the maintenance"):
            engine.start("web")
        assert asked == [True]  # asked once, under the traffic lock
        assert router.memory["web"] == "blue" and router.flips == []
        green = store.get_side("web", "green")
        assert green is not None and green.state == "verified"  # kept for the next window
        runs = store.list_runs(service="web")
        assert runs[-1].status == "deferred"
        flips = [r for r in store.audit_records("web") if r.command.startswith("rollout.flip")]
        assert flips == []
        svc = store.get_service("web")
        assert svc is not None and svc.pending_flip is None
