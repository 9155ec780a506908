"""bluegreen.yml: a service's progressive bake (`bake.steps`) and its analysis
(`bake.analysis`), issue 23.

    bake:
      steps:                      # share of new requests to the patched side, each held
        - {percent: 5, seconds: 10}
        - {percent: 25, seconds: 10}
        - {percent: 100, seconds: 10}   # the last: the flip to 100 % and the final bake
      analysis:
        source: http://127.0.0.1:9090   # a Prometheus, or `counters` (the load balancer's)
        min_volume: 20                  # the patched side's responses per window to judge
        metrics:                        # overrides of the defaults (or new metrics)
          error_ratio: {relative: 0.5, floor: 0.01, max: 0.05}
          latency_seconds: {floor: 0.1}
        failure_limit: 1                # fail after N failed measurements
        inconclusive_limit: 3           # ... or K inconclusive ones in a row
        on_inconclusive: rollback       # or `pause` (a person decides, like an approval)
        inconclusive_seconds: 60        # how long an inconclusive step is held at most

Without `steps` the bake is today's: the flip to 100 %, then `bake.seconds` watched.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator, model_validator

from orchestrator.config.types import NonEmptyStr, StrictModel

MAX_STEPS = 20
DEFAULT_METRIC_NAMES = ("error_ratio", "latency_seconds")
"""The metrics judged by default (orchestrator/analysis/queries.py); others need a query."""


class BakeStep(StrictModel):
    """One exposure step: `percent` of new requests go to the patched side for `seconds`."""

    percent: int = Field(ge=1, le=100, description="1..99 for a step, 100 for the last")
    seconds: float = Field(ge=0, le=86400, description="how long the step is held and "
                           "judged (at least two scrape intervals of your Prometheus); "
                           "the last step's: how long the new live side is watched")


class MetricSettings(StrictModel):
    """One judged metric: the patched side against its twin over the same window."""

    query: NonEmptyStr | None = Field(
        default=None, description="PromQL with {selector} (the side) and {window} (e.g. "
        "10s); omitted: the default for this metric name")
    relative: float | None = Field(default=None, ge=0, le=100,
                                   description="relative tolerance: 0.5 = 50 % worse")
    floor: float | None = Field(default=None, ge=0, description="absolute margin over "
                                "the twin (a zero-error twin does not hide new errors)")
    max: float | None = Field(default=None, ge=0, description="absolute limit")
    higher_is_worse: bool = True

    @field_validator("query")
    @classmethod
    def _placeholders(cls, query: str | None) -> str | None:
        if query is not None and "{selector}" not in query:
            raise ValueError("a metric's query must contain {selector} (each side's label "
                             'selector, e.g. proxy="web_green"), or each side would be '
                             "measured by the same query")
        return query


class AnalysisSettings(StrictModel):
    """How each step is judged (orchestrator/analysis)."""

    source: NonEmptyStr = Field(
        default="counters", description="`counters` (the load balancer's own: error ratio "
        "and latency) or a Prometheus base URL, http:// or https://")
    selector: NonEmptyStr = Field(
        default='proxy="{backend}"', description="a side's PromQL label selector; "
        "{backend} is the side's backend name")
    volume_query: NonEmptyStr | None = Field(
        default=None, description="PromQL of a side's responses in the window (default: "
        "HAProxy's responses_total increase)")
    min_volume: float = Field(default=20, ge=1, description="the patched side's responses "
                              "in a window below which nothing is judged (inconclusive)")
    interval_seconds: float = Field(default=2.0, gt=0, le=3600,
                                    description="how often a step is measured")
    metrics: dict[NonEmptyStr, MetricSettings] = Field(default_factory=dict, max_length=20)
    failure_limit: int = Field(default=1, ge=1, le=1000,
                               description="fail after this many failed measurements")
    inconclusive_limit: int = Field(default=3, ge=1, le=1000, description="consecutive "
                                    "inconclusive measurements that end the step's wait")
    on_inconclusive: Literal["rollback", "pause"] = "rollback"
    inconclusive_seconds: float = Field(
        default=60, ge=0, le=86400, description="how long a step is held past its seconds "
        "while its measurements are inconclusive, before on_inconclusive")

    @field_validator("source")
    @classmethod
    def _source(cls, source: str) -> str:
        if source != "counters" and (not source.startswith(("http://", "https://"))
                                     or any(c.isspace() for c in source)):
            raise ValueError(f"bake.analysis.source must be `counters` or a Prometheus URL "
                             f"(http:// or https://, no spaces), got {source!r}")
        return source

    @field_validator("selector")
    @classmethod
    def _selector(cls, selector: str) -> str:
        if "{backend}" not in selector:
            raise ValueError("bake.analysis.selector must contain {backend} (the side's "
                             'backend name), e.g. proxy="{backend}"')
        return selector

    @field_validator("volume_query")
    @classmethod
    def _volume(cls, query: str | None) -> str | None:
        return MetricSettings._placeholders(query)

    @model_validator(mode="after")
    def _new_metrics_have_queries(self) -> AnalysisSettings:
        missing = sorted(name for name, m in self.metrics.items()
                         if m.query is None and name not in DEFAULT_METRIC_NAMES)
        if missing:
            raise ValueError(f"bake.analysis.metrics: {', '.join(missing)} need a `query` "
                             f"(only {', '.join(DEFAULT_METRIC_NAMES)} have defaults)")
        if self.source == "counters" and any(m.query for m in self.metrics.values()):
            raise ValueError("bake.analysis: PromQL queries need a Prometheus `source` "
                             "(the load balancer's counters give the error ratio and the "
                             "latency only)")
        return self

    @property
    def prometheus(self) -> str | None:
        return None if self.source == "counters" else self.source


def check_steps(steps: list[BakeStep]) -> list[BakeStep]:
    """Strictly increasing percents, the last one 100 (the flip)."""
    if not steps:
        return steps
    percents = [s.percent for s in steps]
    if percents[-1] != 100:
        raise ValueError(f"bake.steps: the last step is the flip and must be percent 100, "
                         f"got {percents} (add `- {{percent: 100, seconds: 10}}`)")
    if any(b <= a for a, b in zip(percents, percents[1:], strict=False)):
        raise ValueError(f"bake.steps: percents must increase from step to step, got "
                         f"{percents}")
    short = [s.percent for s in steps[:-1] if s.seconds < 1]
    if short:
        raise ValueError(f"bake.steps: a step before the flip is held at least 1 second "
                         f"(steps at {short} % are shorter)")
    return steps
