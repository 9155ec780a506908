"""One step's analysis: every metric for the patched side and its twin over the same
window, from a metric source, judged (see judge.py). Two sources: Prometheus (PromQL
templates with a side selector) and, without one, the load balancer's own counters."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Protocol

from orchestrator.analysis.judge import combine, judge_metric
from orchestrator.analysis.model import Judgement, Measurement, MetricSpec
from orchestrator.analysis.prometheus import Sample
from orchestrator.analysis.queries import VOLUME, render, rtime_sum, window_mean
from orchestrator.routers.base import TrafficCounters
from orchestrator.sides import Side


class Source(Protocol):
    def query(self, promql: str, at: float | None = None) -> Sample: ...


def analyze(
    source: Source,
    metrics: Sequence[MetricSpec],
    *,
    canary: str,
    baseline: str,
    window: str,
    min_volume: float,
    at: float | None = None,
    volume_query: str = VOLUME,
) -> Judgement:
    """`canary` / `baseline`: the two sides' label selectors (e.g. `proxy="web_green"`)."""
    volume = {side: source.query(render(volume_query, selector, window), at)
              for side, selector in (("canary", canary), ("baseline", baseline))}
    measurements: list[Measurement] = []
    for spec in metrics:
        queries = {"canary": render(spec.query, canary, window),
                   "baseline": render(spec.query, baseline, window)}
        values = {side: source.query(q, at) for side, q in queries.items()}
        measured = judge_metric(
            spec, values["canary"].value, values["baseline"].value,
            canary_volume=volume["canary"].value, baseline_volume=volume["baseline"].value,
            min_volume=min_volume, queries=queries)
        problems = [s.problem for s in (volume["canary"], values["canary"],
                                        values["baseline"]) if s.problem]
        if measured.verdict == "inconclusive" and problems:
            measured = Measurement(measured.metric, measured.verdict,
                                   f"{measured.why}: {problems[0]}", measured.canary,
                                   measured.baseline, measured.canary_volume,
                                   measured.baseline_volume, measured.queries,
                                   error=any(p.startswith("Prometheus") for p in problems))
        measurements.append(measured)
    return combine(measurements)


def analyze_counters(
    before: Mapping[Side, TrafficCounters | None],
    after: Mapping[Side, TrafficCounters | None],
    *,
    canary: Side,
    baseline: Side,
    specs: Sequence[MetricSpec],
    min_volume: float,
) -> Judgement:
    """The error ratio and the latency from the load balancer's own counters (no
    Prometheus): what each side answered between two readings, and the mean response time
    of those responses (`queries.window_mean` of the load balancer's sliding average). A
    side the load balancer cannot count is no data. A load balancer that keeps no response
    times at all (no reading has one: nginx, a command router) is judged on the error
    ratio alone, as before; one that keeps them judges the latency too."""
    volume: dict[Side, float | None] = {}
    values: dict[str, dict[Side, float | None]] = {"error_ratio": {}, "latency_seconds": {}}
    for side in (canary, baseline):
        old, new = before.get(side), after.get(side)
        if old is None or new is None:
            volume[side] = values["error_ratio"][side] = None
            values["latency_seconds"][side] = None
            continue
        delta = new.since(old)
        volume[side] = float(delta.responses)
        values["error_ratio"][side] = delta.errors_5xx / delta.responses \
            if delta.responses else None
        values["latency_seconds"][side] = _latency(old, new)
    readings = [c for c in (*before.values(), *after.values()) if c is not None]
    timed = any(c.response_ms is not None for c in readings)
    measurements = []
    for spec in specs:
        if spec.name == "latency_seconds" and not timed:
            continue
        side_values = values.get(spec.name, {})
        how = f"load balancer counters ({spec.name})"
        measurements.append(judge_metric(
            spec, side_values.get(canary), side_values.get(baseline),
            canary_volume=volume[canary], baseline_volume=volume[baseline],
            min_volume=min_volume,
            queries={"canary": f"{how} of {canary}", "baseline": f"{how} of {baseline}"}))
    return combine(measurements)


def _latency(old: TrafficCounters, new: TrafficCounters) -> float | None:
    """The window's mean response time in seconds, from the sliding average (ms)."""
    if old.response_ms is None or new.response_ms is None or new.responses < old.responses:
        return None  # no times kept, or the load balancer restarted between the readings
    mean = window_mean(rtime_sum(old.response_ms, old.responses),
                       rtime_sum(new.response_ms, new.responses), old.responses, new.responses)
    return None if mean is None else max(0.0, mean) / 1000.0
