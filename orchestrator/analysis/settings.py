"""What a service's `bake.analysis` (config/bake.py) asks the analysis to judge: the
metrics (the defaults of queries.py with the overrides of bluegreen.yml) and each side's
label selector."""

from __future__ import annotations

from dataclasses import replace

from orchestrator.analysis.model import MetricSpec
from orchestrator.analysis.queries import DEFAULT_METRICS, VOLUME
from orchestrator.config.bake import AnalysisSettings


def metric_specs(settings: AnalysisSettings) -> tuple[MetricSpec, ...]:
    """The defaults, each overridden field by field, then the new metrics (with the load
    balancer's counters as the source, only the defaults: error ratio and latency)."""
    specs = {spec.name: spec for spec in DEFAULT_METRICS}
    for name, m in settings.metrics.items():
        base = specs.get(name) or MetricSpec(name, m.query or "")
        specs[name] = replace(
            base,
            query=m.query or base.query,
            relative=base.relative if m.relative is None else m.relative,
            floor=base.floor if m.floor is None else m.floor,
            max_value=base.max_value if m.max is None else m.max,
            higher_is_worse=m.higher_is_worse,
        )
    return tuple(specs.values())


def side_selector(settings: AnalysisSettings, backend: str) -> str:
    """The PromQL label selector of one side (e.g. `proxy="web_green"`)."""
    return settings.selector.replace("{backend}", backend)


def volume_query(settings: AnalysisSettings) -> str:
    return settings.volume_query or VOLUME
