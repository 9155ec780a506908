"""What a measurement is and what the judge says about it (plain, frozen, JSON-ready)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

Verdict = Literal["pass", "fail", "inconclusive"]


@dataclass(frozen=True)
class MetricSpec:
    """One metric judged per step: the patched side (canary) against the twin (baseline).

    Fails when the canary exceeds `max_value` (an absolute limit), or exceeds the baseline
    by more than `relative` (0.5 = 50 % worse) AND by more than `floor` (an absolute
    margin, so that a zero baseline does not hide new errors nor make a single error fail).
    """

    name: str
    query: str
    """A template: `{selector}` (the side's label selector) and `{window}` (e.g. `30s`)."""
    relative: float = 0.5
    floor: float = 0.0
    max_value: float | None = None
    higher_is_worse: bool = True

    def as_dict(self) -> dict[str, Any]:
        return {"name": self.name, "query": self.query, "relative": self.relative,
                "floor": self.floor, "max_value": self.max_value}


@dataclass(frozen=True)
class Measurement:
    """One metric over one window, both sides, with its verdict and why."""

    metric: str
    verdict: Verdict
    why: str
    canary: float | None
    baseline: float | None
    canary_volume: float | None = None
    baseline_volume: float | None = None
    queries: dict[str, str] = field(default_factory=dict)
    """side -> the query as sent."""
    error: bool = False
    """The source failed (unreachable, an error answer): counted against the limit of
    consecutive errors, unlike no data, which only holds the step."""

    def as_dict(self) -> dict[str, Any]:
        return {"metric": self.metric, "verdict": self.verdict, "why": self.why,
                "canary": self.canary, "baseline": self.baseline,
                "canary_volume": self.canary_volume, "baseline_volume": self.baseline_volume,
                "queries": dict(self.queries), "error": self.error}


@dataclass(frozen=True)
class Judgement:
    """Every measurement of one step (one window) and the step's verdict: fail if any
    failed, else inconclusive if any was, else pass."""

    verdict: Verdict
    measurements: tuple[Measurement, ...]

    @property
    def errored(self) -> bool:
        """Inconclusive because the source failed (not merely no data)."""
        return self.verdict == "inconclusive" and any(m.error for m in self.measurements)

    @property
    def why(self) -> str:
        worst = [m for m in self.measurements if m.verdict == self.verdict]
        return "; ".join(f"{m.metric}: {m.why}" for m in worst) or "no metric judged"

    def as_dict(self) -> dict[str, Any]:
        return {"verdict": self.verdict, "why": self.why,
                "measurements": [m.as_dict() for m in self.measurements]}
