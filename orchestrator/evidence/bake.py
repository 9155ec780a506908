"""The bake's exposure steps as evidence: every measurement of every step, one row each.

A step's journal record (`canary:N`, see `rollout.records.CanaryStep.as_dict`) holds one
judgement per measured interval, each with one measurement per metric: the queries as sent,
both sides' values and volumes, the verdict and why. The campaign report (JSON, Markdown,
HTML) and the dashboard show these rows; every text in them (a metric's name, a query from
bluegreen.yml, an error from the source) is untrusted and escaped by the renderer.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class MeasurementRow:
    """One metric measured once during one step: the patched side against its twin."""

    step: int
    percent: int
    at: int
    """Which measurement of the step (1 = the first interval)."""
    metric: str
    verdict: str
    canary: str
    baseline: str
    volume: str
    """Both sides' request volume over the window, "patched / twin"."""
    why: str
    queries: tuple[tuple[str, str], ...]
    """(side, the query as sent)."""


def number(value: Any) -> str:
    """A measured value as text: "-" for none (no data), up to 4 significant digits."""
    if value is None:
        return "-"
    if isinstance(value, int | float):
        return f"{value:.4g}"
    return str(value)


def measurement_rows(step: Mapping[str, Any]) -> list[MeasurementRow]:
    """Every measurement of one step's journal record, in the order taken."""
    rows = []
    for at, judged in enumerate(step.get("measurements") or (), 1):
        for m in judged.get("measurements") or ():
            rows.append(MeasurementRow(
                step=int(step.get("number", 0)), percent=int(step.get("percent", 0)), at=at,
                metric=str(m.get("metric")), verdict=str(m.get("verdict")),
                canary=number(m.get("canary")), baseline=number(m.get("baseline")),
                volume=f"{number(m.get('canary_volume'))} / {number(m.get('baseline_volume'))}",
                why=str(m.get("why") or ""),
                queries=tuple((str(k), str(v)) for k, v in (m.get("queries") or {}).items())))
    return rows


def step_words(step: Mapping[str, Any]) -> str:
    """One line for a step: "step 1 (20%): fail after 6.2s from prometheus: why"."""
    head = f"step {step.get('number')} ({step.get('percent')}%): {step.get('verdict')}"
    if step.get("verdict") == "running":
        return head
    return (f"{head} after {float(step.get('seconds') or 0):g}s from "
            f"{step.get('source') or '-'}: {step.get('why') or ''}")
