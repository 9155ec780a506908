"""The flip step asks the campaign's window (`may_flip`) twice: before it waits for the
traffic lock, and through the kernel right before the router changes (issue 20, 11)."""

from __future__ import annotations

from pathlib import Path

import pytest

from orchestrator.errors import OutsideWindow
from orchestrator.rollout.runner import Rollout
from orchestrator.testing import FakeRouter, fake_config, fake_tools, temp_store


def test_a_window_that_closes_after_the_first_check_defers_the_flip(tmp_path: Path) -> None:
    asked: list[str] = []

    def may_flip(service: str) -> str | None:
        asked.append(service)
        # open at the step's first look, closed by the time the kernel holds the lock
        return None if len(asked) == 1 else "outside the maintenance window"

    router = FakeRouter()
    with temp_store(tmp_path) as store:
        engine = Rollout(fake_config(tmp_path), store, router, actor="ci",
                         tools=fake_tools(), may_flip=may_flip)
        with pytest.raises(OutsideWindow, match="not flipping: outside the maintenance"):
            engine.start("web")
        assert asked == ["web", "web"]
        assert router.memory["web"] == "blue" and router.flips == []
        green = store.get_side("web", "green")
        assert green is not None and green.state == "verified"  # kept for the next window
        runs = store.list_runs(service="web")
        assert runs[-1].status == "deferred"
        flips = [r for r in store.audit_records("web") if r.command.startswith("rollout.flip")]
        assert flips == []
        svc = store.get_service("web")
        assert svc is not None and svc.pending_flip is None
