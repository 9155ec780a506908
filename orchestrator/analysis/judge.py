"""The judge: pure rules over two sides' values (no I/O).

Data is validated before it is judged (Kayenta's lesson): a missing value, NaN, an error of
the source, or too little volume on the patched side is INCONCLUSIVE, never a pass. A value
is judged against the twin measured over the same window: worse by more than the relative
tolerance AND by more than the absolute floor, or above the absolute limit, is a FAIL.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from orchestrator.analysis.model import Judgement, Measurement, MetricSpec, Verdict


def _usable(value: float | None) -> bool:
    return value is not None and not math.isnan(value) and not math.isinf(value)


def judge_metric(
    spec: MetricSpec,
    canary: float | None,
    baseline: float | None,
    *,
    canary_volume: float | None,
    baseline_volume: float | None,
    min_volume: float,
    queries: dict[str, str] | None = None,
) -> Measurement:
    """One metric's verdict; see the module docstring."""

    def result(verdict: Verdict, why: str) -> Measurement:
        return Measurement(spec.name, verdict, why, canary, baseline, canary_volume,
                           baseline_volume, dict(queries or {}))

    if not _usable(canary_volume):
        return result("inconclusive", "no request volume for the patched side (no data)")
    assert canary_volume is not None
    if canary_volume < min_volume:
        return result("inconclusive", f"too little volume on the patched side "
                      f"({canary_volume:g} requests < {min_volume:g})")
    if not _usable(canary):
        return result("inconclusive", f"no value for the patched side ({_what(canary)})")
    assert canary is not None
    if spec.max_value is not None and _worse(spec, canary, spec.max_value):
        twin = f"{baseline:.4g}" if _usable(baseline) else _what(baseline)
        return result("fail", f"patched side {canary:.4g} vs twin {twin}: over the limit "
                      f"{spec.max_value:g}")
    if not _usable(baseline):
        return result("inconclusive", f"no value for the twin ({_what(baseline)}): nothing "
                      "to compare with")
    assert baseline is not None
    margin = abs(baseline) * spec.relative
    allowed = baseline + max(margin, spec.floor) if spec.higher_is_worse else \
        baseline - max(margin, spec.floor)
    if _worse(spec, canary, allowed):
        return result("fail", f"patched side {canary:.4g} vs twin {baseline:.4g} (allowed "
                      f"up to {allowed:.4g}: +{spec.relative:.0%} or +{spec.floor:g})")
    return result("pass", f"patched side {canary:.4g} vs twin {baseline:.4g} (allowed up to "
                  f"{allowed:.4g})")


def _worse(spec: MetricSpec, value: float, bound: float) -> bool:
    return value > bound if spec.higher_is_worse else value < bound


def _what(value: float | None) -> str:
    return "no data" if value is None else "NaN" if math.isnan(value) else "infinite"


def combine(measurements: Sequence[Measurement]) -> Judgement:
    """A step's verdict from its measurements (none at all is inconclusive)."""
    verdicts = {m.verdict for m in measurements}
    verdict: Verdict = ("fail" if "fail" in verdicts
                        else "inconclusive" if "inconclusive" in verdicts or not measurements
                        else "pass")
    return Judgement(verdict, tuple(measurements))


@dataclass
class Budget:
    """Argo's failure limits across the measurements of a bake: stop after `failure_limit`
    failed judgements, or after `inconclusive_limit` inconclusive ones in a row (then
    `on_inconclusive` decides: roll back or pause)."""

    failure_limit: int = 1
    inconclusive_limit: int = 3
    failures: int = 0
    inconclusive_in_a_row: int = 0

    def record(self, judgement: Judgement) -> Verdict | None:
        """The bake's decision after this judgement: "fail" (roll back), "inconclusive"
        (the inconclusive limit is reached), or None (keep watching / go on)."""
        if judgement.verdict == "fail":
            self.failures += 1
            self.inconclusive_in_a_row = 0
            return "fail" if self.failures >= self.failure_limit else None
        if judgement.verdict == "inconclusive":
            self.inconclusive_in_a_row += 1
            return ("inconclusive" if self.inconclusive_in_a_row >= self.inconclusive_limit
                    else None)
        self.inconclusive_in_a_row = 0
        return None
