"""The bake's exposure steps through the real kernel (`expose_traffic`, `move_traffic`) on
the fake router (its counters as the source, a clock that sleeps instantly) and the real
SQLite store: a patched side that fails
3 % of requests is caught at the first step and rolled back naming the error ratio and both
sides' values; a healthy one goes through every step and flips; no traffic, or a source
that fails, never promotes; resume after a crash continues at the step that did not pass."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from orchestrator.config.loaded import load_config
from orchestrator.errors import OutsideWindow, RolledBack, RouterError, VerificationFailed
from orchestrator.rollout.runner import Rollout
from orchestrator.rollout.tools import expose_through_kernel
from orchestrator.routers.base import TrafficCounters
from orchestrator.sides import Side
from orchestrator.state import SQLiteStateStore
from orchestrator.testing import (
    FakeRouter,
    SimulatedCrash,
    crash_at,
    fake_config,
    fake_tools,
    temp_store,
)
from orchestrator.traffic.exposure import ExposeRequest

STEPS = [{"percent": 5, "seconds": 10}, {"percent": 25, "seconds": 10},
         {"percent": 100, "seconds": 0.5}]
RPS = 100.0  # user requests a second at the frontend


@dataclass
class World:
    """A clock, the split the exposure set, and user traffic counted per side."""

    router: FakeRouter = field(default_factory=FakeRouter)
    now: float = 0.0
    error_ratio: dict[Side, float] = field(default_factory=dict)
    rps: float = RPS
    served: dict[Side, float] = field(default_factory=lambda: {"blue": 0.0, "green": 0.0})
    errors: dict[Side, float] = field(default_factory=lambda: {"blue": 0.0, "green": 0.0})
    splits: list[tuple[Side | None, int]] = field(default_factory=list)
    counters_fail: bool = False

    def sleep(self, seconds: float) -> None:
        exposed = self.router.exposed.get("web")
        share = exposed.percent / 100 if exposed is not None and exposed.side == "green" \
            else 0.0
        for side, part in (("green", share), ("blue", 1 - share)):
            n = self.rps * seconds * part
            self.served[side] += n  # type: ignore[index]
            self.errors[side] += n * self.error_ratio.get(side, 0.0)  # type: ignore[arg-type, index]
        self.now += seconds

    def expose(self, store: Any, router: Any, change: ExposeRequest) -> None:
        expose_through_kernel(store, router, change)
        self.splits.append((change.side, change.percent))

    def counters(self, _service: str, side: Side) -> TrafficCounters | None:
        if self.counters_fail:
            raise RouterError("fake router: the admin socket is gone")
        return TrafficCounters(int(self.served[side]), int(self.errors[side]))


def rollout(tmp_path: Path, store: SQLiteStateStore, router: FakeRouter, world: World,
            **analysis: Any) -> Rollout:
    world.router = router
    fake_config(tmp_path)
    path = tmp_path / "bluegreen.yml"
    doc = json.loads(path.read_text())
    doc["services"]["web"]["bake"].update(
        {"steps": STEPS, "analysis": {"min_volume": 20, "interval_seconds": 2,
                                      "inconclusive_seconds": 10, **analysis}})
    path.write_text(json.dumps(doc))
    tools = fake_tools()
    tools.expose, tools.clock, tools.sleep = world.expose, lambda: world.now, world.sleep
    router.count = world.counters
    return Rollout(load_config(path), store, router, actor="ci", tools=tools)


def test_a_healthy_patch_goes_through_every_step_then_flips(tmp_path: Path) -> None:
    world, router = World(), FakeRouter()
    with temp_store(tmp_path) as store:
        result = rollout(tmp_path, store, router, world).start("web")
        assert result.status == "done" and router.memory["web"] == "green"
        assert world.splits == [("green", 5), ("green", 25)]
        canary = result.steps["canary"].as_dict()
        assert [(s["percent"], s["verdict"]) for s in canary["steps"]] == [(5, "pass"),
                                                                            (25, "pass")]
        journal = {(e.step, e.phase): e.data for e in store.journal(result.run_id)}
        first = journal[("canary:1", "end")]
        assert first["source"] == "counters" and first["seconds"] >= 10
        last = first["measurements"][-1]["measurements"][0]
        assert last["metric"] == "error_ratio" and last["verdict"] == "pass"
        assert last["queries"]["canary"] == "load balancer counters (error_ratio) of green"


def test_three_percent_of_errors_is_caught_at_the_first_step(tmp_path: Path) -> None:
    world, router = World(error_ratio={"green": 0.03}), FakeRouter()
    with temp_store(tmp_path) as store:
        with pytest.raises(RolledBack) as info:
            rollout(tmp_path, store, router, world).start("web")
        assert info.value.exit_code == 4
        message = info.value.message
        assert "step 1 (5% to green) fail" in message and "error_ratio" in message
        assert "vs twin 0" in message and "back on blue" in message
        assert world.splits == [("green", 5)]  # caught at 5 %
        assert router.exposed == {} and router.memory["web"] == "blue" and router.flips == []
        green = store.get_side("web", "green")
        assert green is not None and green.state == "failed_live"
        assert any(r.command == "rollout.auto-rollback" for r in store.audit_records("web"))
        # users exposed: a small share of what a full flip would have sent
        assert world.served["green"] < 0.1 * world.served["blue"]
        run = store.get_run(store.list_runs()[-1].run_id)
        assert run is not None and run.status == "rolled_back"


def test_no_user_traffic_never_promotes(tmp_path: Path) -> None:
    world, router = World(error_ratio={"green": 0.03}, rps=0.0), FakeRouter()
    with temp_store(tmp_path) as store:
        with pytest.raises(RolledBack) as info:
            rollout(tmp_path, store, router, world).start("web")
        message = info.value.message
        assert "inconclusive" in message and "too little volume" in message, message
        assert world.now >= 20  # held up to the deadline (10 s + 10 s) first
        assert router.memory["web"] == "blue" and router.exposed == {}


def test_inconclusive_with_pause_defers_the_run_with_nothing_exposed(tmp_path: Path) -> None:
    world, router = World(rps=0.0), FakeRouter()
    with temp_store(tmp_path) as store:
        with pytest.raises(OutsideWindow) as info:
            rollout(tmp_path, store, router, world, on_inconclusive="pause").start("web")
        assert "paused" in info.value.message and world.splits[-1] == (None, 0)
        run = store.list_runs()[-1]
        assert run.status == "deferred" and router.memory["web"] == "blue"
        green = store.get_side("web", "green")
        assert green is not None and green.state == "verified"  # a person decides


def test_a_window_that_closes_between_steps_leaves_nobody_on_the_patched_side(
        tmp_path: Path) -> None:
    """The campaign's window closes after step 1: step 2 is refused by the kernel, and the
    deferred run does not leave step 1's share of users on green with nothing judging it."""
    world, router = World(), FakeRouter()
    asked: list[str] = []

    def may_flip(_service: str) -> str | None:
        asked.append(_service)
        return None if len(world.splits) < 1 else "the maintenance window closed"

    with temp_store(tmp_path) as store:
        job = rollout(tmp_path, store, router, world)
        job.may_flip = may_flip
        with pytest.raises(OutsideWindow) as info:
            job.start("web")
        assert "window closed" in info.value.message
        assert world.splits == [("green", 5), (None, 0)], world.splits
        assert router.exposed == {} and router.memory["web"] == "blue"
        state = store.get_service("web")
        assert state is not None and state.exposed_side is None
        run = store.list_runs()[-1]
        assert run.status == "deferred"
        green = store.get_side("web", "green")
        assert green is not None and green.state == "verified"  # the resume goes on


def test_each_step_rechecks_the_hosts_and_a_failed_recheck_takes_the_exposure_back(
        tmp_path: Path) -> None:
    """Every step, like the flip, exposes only the hosts that were verified: a host of green
    replaced after step 1 refuses step 2, and the failed run does not leave step 1's share
    of users on green with nothing judging it."""
    world, router = World(), FakeRouter()
    checked: list[Side] = []

    def recheck(side: Side, _recorded: Any) -> None:
        checked.append(side)
        if len(checked) > 1:
            raise VerificationFailed("web-green-1 is not the host that was verified")

    with temp_store(tmp_path) as store:
        job = rollout(tmp_path, store, router, world)
        job.tools.recheck = lambda _config, _service, _fleet: recheck
        with pytest.raises(VerificationFailed):
            job.start("web")
        assert checked == ["green", "green"]
        assert world.splits == [("green", 5), (None, 0)], world.splits
        assert router.exposed == {} and router.memory["web"] == "blue"
        state = store.get_service("web")
        assert state is not None and state.exposed_side is None
        run = store.list_runs()[-1]
        assert run.status == "failed" and "not the host that was verified" in (run.result or "")


def test_a_source_that_keeps_failing_stops_the_step_early(tmp_path: Path) -> None:
    world, router = World(counters_fail=True), FakeRouter()
    with temp_store(tmp_path) as store:
        with pytest.raises(RolledBack) as info:
            rollout(tmp_path, store, router, world, inconclusive_limit=2).start("web")
        assert "inconclusive" in info.value.message and router.memory["web"] == "blue"


def test_resume_after_a_crash_continues_at_the_step_that_did_not_pass(tmp_path: Path) -> None:
    world, router = World(), FakeRouter()
    with temp_store(tmp_path) as store:
        job = rollout(tmp_path, store, router, world)
        with crash_at("flip:begin"), pytest.raises(SimulatedCrash):
            job.start("web")
        assert world.splits == [("green", 5), ("green", 25)]
        run = store.list_runs()[-1]
    with temp_store(tmp_path) as store:
        result = rollout(tmp_path, store, router, world).resume(store.get_run(run.run_id))  # type: ignore[arg-type]
        assert result.status == "done" and router.memory["web"] == "green"
        assert world.splits == [("green", 5), ("green", 25)]  # no step repeated



def test_a_kill_after_the_failed_verdict_is_rolled_back_on_resume(tmp_path: Path) -> None:
    world, router = World(error_ratio={"green": 0.03}), FakeRouter()
    with temp_store(tmp_path) as store:
        with crash_at("canary:judged"), pytest.raises(SimulatedCrash):
            rollout(tmp_path, store, router, world).start("web")
        assert router.exposed["web"].percent == 5  # the split the kernel recorded
        run = store.list_runs()[-1]
    with temp_store(tmp_path) as store:
        with pytest.raises(RolledBack) as info:
            rollout(tmp_path, store, router, world).resume(store.get_run(run.run_id))  # type: ignore[arg-type]
        assert "error_ratio" in info.value.message and router.exposed == {}
        assert router.memory["web"] == "blue"
        green = store.get_side("web", "green")
        assert green is not None and green.state == "failed_live"
        # a second resume finds the run ended; nothing moves again
        flips = list(router.flips)
    assert router.flips == flips
