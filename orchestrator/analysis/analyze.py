"""One step's analysis: every metric for the patched side and its twin over the same
window, from a metric source, judged (see judge.py). Two sources: Prometheus (PromQL
templates with a side selector) and, without one, the load balancer's own counters."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Protocol

from orchestrator.analysis.judge import combine, judge_metric
from orchestrator.analysis.model import Judgement, Measurement, MetricSpec
from orchestrator.analysis.prometheus import Sample
from orchestrator.analysis.queries import VOLUME, render
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
    spec: MetricSpec,
    min_volume: float,
) -> Judgement:
    """The error ratio from the load balancer's own counters (no Prometheus): what each
    side answered between two readings. A side the load balancer cannot count is no data."""
    ratio: dict[Side, float | None] = {}
    volume: dict[Side, float | None] = {}
    for side in (canary, baseline):
        old, new = before.get(side), after.get(side)
        if old is None or new is None:
            ratio[side] = volume[side] = None
            continue
        delta = new.since(old)
        volume[side] = float(delta.responses)
        ratio[side] = delta.errors_5xx / delta.responses if delta.responses else None
    measured = judge_metric(spec, ratio[canary], ratio[baseline],
                            canary_volume=volume[canary], baseline_volume=volume[baseline],
                            min_volume=min_volume,
                            queries={"canary": f"load balancer counters of {canary}",
                                     "baseline": f"load balancer counters of {baseline}"})
    return combine([measured])
