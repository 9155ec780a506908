"""Bake's watch of the new side's response counters at the load balancer."""

from __future__ import annotations

from orchestrator.errors import RouterError
from orchestrator.rollout.steps.bake import TrafficWatch
from orchestrator.routers.base import TrafficCounters
from orchestrator.sides import Side


class CountingRouter:
    """Only `counters`: hands out the readings it was given, one per call."""

    def __init__(self, *readings: TrafficCounters | None | Exception) -> None:
        self.readings = list(readings)

    def counters(self, service: str, side: Side) -> TrafficCounters | None:
        value = self.readings.pop(0) if len(self.readings) > 1 else self.readings[0]
        if isinstance(value, Exception):
            raise value
        return value


def watch(*readings: TrafficCounters | None | Exception) -> TrafficWatch:
    return TrafficWatch(CountingRouter(*readings), "web", "green", 0.05, 20)  # type: ignore[arg-type]


def test_since_is_a_difference_and_survives_a_counter_reset() -> None:
    assert TrafficCounters(150, 7).since(TrafficCounters(100, 2)) == TrafficCounters(50, 5)
    assert TrafficCounters(3, 1).since(TrafficCounters(100, 2)) == TrafficCounters(3, 1)


def test_only_the_traffic_since_bake_began_counts() -> None:
    w = watch(TrafficCounters(10_000, 900), TrafficCounters(10_030, 901))
    assert w.degraded() is None  # 1 of 30: under 5 %
    assert w.counted() == TrafficCounters(30, 1)


def test_too_many_5xx_is_degraded_once_enough_responses_were_seen() -> None:
    w = watch(TrafficCounters(0, 0), TrafficCounters(10, 10), TrafficCounters(40, 30))
    assert w.degraded() is None  # 10 responses: not judged yet
    why = w.degraded()
    assert why is not None and "30 of 40" in why and "5xx" in why and "green" in why


def test_a_router_without_counters_or_failing_to_read_them_never_degrades() -> None:
    assert watch(None).degraded() is None
    assert watch(None).counted() is None
    w = watch(TrafficCounters(0, 0), RouterError("socket gone"))
    assert w.degraded() is None
