"""One exposure step's measurements: the patched side and its twin over the same window
(from the step's start to now), from the service's source: a Prometheus (PromQL over the
window) or, without one, the load balancer's own counters (read at the step's start and at
each measurement)."""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping

from orchestrator.analysis.analyze import Source, analyze, analyze_counters
from orchestrator.analysis.model import Judgement
from orchestrator.analysis.prometheus import PrometheusSource
from orchestrator.analysis.settings import metric_specs, side_selector, volume_query
from orchestrator.config.bake import AnalysisSettings
from orchestrator.errors import RouterError
from orchestrator.routers.base import Router, TrafficCounters
from orchestrator.sides import Side


class StepWindow:
    """Measures one step: `canary` (the patched side) against `baseline` (its twin)."""

    def __init__(self, settings: AnalysisSettings, router: Router, service: str, *,
                 canary: Side, baseline: Side, backends: Mapping[Side, str | None],
                 source: Source | None = None,
                 clock: Callable[[], float] = time.time) -> None:
        self.settings, self.router, self.service = settings, router, service
        self.canary, self.baseline, self.backends = canary, baseline, backends
        self.clock = clock
        self.specs = metric_specs(settings)
        self.source = source if source is not None or settings.prometheus is None else \
            PrometheusSource(settings.prometheus)
        self.started = clock()
        self.before = self._counters() if self.source is None else {}

    @property
    def kind(self) -> str:
        return "prometheus" if self.source is not None else "counters"

    def _counters(self) -> dict[Side, TrafficCounters | None]:
        read: dict[Side, TrafficCounters | None] = {}
        for side in (self.canary, self.baseline):
            try:
                read[side] = self.router.counters(self.service, side)
            except RouterError:
                read[side] = None
        return read

    def window(self) -> str:
        """PromQL's range: the seconds since the step began (whole, at least 2)."""
        return f"{max(2, math.ceil(self.clock() - self.started))}s"

    def _backend(self, side: Side) -> str:
        return self.backends.get(side) or f"{self.service}_{side}"

    def measure(self) -> Judgement:
        if self.source is None:
            return analyze_counters(self.before, self._counters(), canary=self.canary,
                                    baseline=self.baseline, specs=self.specs,
                                    min_volume=self.settings.min_volume)
        return analyze(
            self.source, self.specs,
            canary=side_selector(self.settings, self._backend(self.canary)),
            baseline=side_selector(self.settings, self._backend(self.baseline)),
            window=self.window(), min_volume=self.settings.min_volume,
            volume_query=volume_query(self.settings),
        )
