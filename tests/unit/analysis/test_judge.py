"""The judge on recorded values: no data, NaN, a zero baseline, tiny volume, errors of the
source and consecutive inconclusive answers never pass; real regressions fail."""

from __future__ import annotations

import json
import math

import pytest

from orchestrator.analysis.analyze import analyze, analyze_counters
from orchestrator.analysis.judge import Budget, combine, judge_metric
from orchestrator.analysis.model import MetricSpec
from orchestrator.analysis.prometheus import Sample, parse_reply
from orchestrator.analysis.queries import DEFAULT_METRICS, ERROR_RATIO, render
from orchestrator.routers.base import TrafficCounters

ERRORS = DEFAULT_METRICS[0]
LATENCY = DEFAULT_METRICS[1]


def judge(spec: MetricSpec, canary: float | None, baseline: float | None,
          volume: float | None = 500.0) -> str:
    return judge_metric(spec, canary, baseline, canary_volume=volume, baseline_volume=volume,
                        min_volume=50).verdict


@pytest.mark.parametrize(("canary", "baseline", "volume", "verdict"), [
    (0.0, 0.0, 500, "pass"),
    (0.004, 0.003, 500, "pass"),          # within the 1-point floor
    (0.03, 0.0, 500, "fail"),             # kayenta#377: errors vs a zero-error twin
    (0.06, 0.06, 500, "fail"),            # both bad: over the absolute 5 % limit
    (None, 0.0, 500, "inconclusive"),     # no series for the canary
    (math.nan, 0.0, 500, "inconclusive"), # NaN (0/0: no traffic in the window)
    (0.0, None, 500, "inconclusive"),     # nothing to compare with
    (0.03, 0.0, 10, "inconclusive"),      # too little volume to judge
    (0.0, 0.0, None, "inconclusive"),     # volume unknown
    (math.inf, 0.0, 500, "inconclusive"),
])
def test_error_ratio(canary: float | None, baseline: float | None, volume: float | None,
                     verdict: str) -> None:
    assert judge(ERRORS, canary, baseline, volume) == verdict


def test_latency_relative_and_floor() -> None:
    assert judge(LATENCY, 0.35, 0.05) == "fail"      # +300 ms (issue 23's demo-web 1.1.3)
    assert judge(LATENCY, 0.09, 0.05) == "pass"      # +80 %, but under the 100 ms floor
    assert judge(LATENCY, 1.40, 1.00) == "pass"      # +40 %: under the relative tolerance
    assert judge(LATENCY, 1.60, 1.00) == "fail"
    lower = MetricSpec("throughput", "q", relative=0.2, higher_is_worse=False)
    assert judge(lower, 70.0, 100.0) == "fail" and judge(lower, 90.0, 100.0) == "pass"


def test_a_step_fails_if_any_metric_fails_and_is_never_pass_without_data() -> None:
    m = [judge_metric(ERRORS, 0.0, 0.0, canary_volume=500, baseline_volume=500, min_volume=50),
         judge_metric(LATENCY, None, 0.1, canary_volume=500, baseline_volume=500,
                      min_volume=50)]
    assert combine(m).verdict == "inconclusive"
    assert "latency_seconds" in combine(m).why
    assert combine([]).verdict == "inconclusive"
    failing = judge_metric(ERRORS, 0.2, 0.0, canary_volume=500, baseline_volume=500,
                           min_volume=50)
    assert combine([*m, failing]).verdict == "fail"
    assert "0.2 vs twin 0" in combine([*m, failing]).why


def test_budget_failure_limit_and_consecutive_inconclusive() -> None:
    def verdict(v: str) -> object:
        return combine([judge_metric(ERRORS, {"pass": 0.0, "fail": 0.5}.get(v), 0.0,
                                     canary_volume=500, baseline_volume=500, min_volume=50)])

    budget = Budget(failure_limit=2, inconclusive_limit=3)
    assert budget.record(verdict("fail")) is None  # type: ignore[arg-type]
    assert budget.record(verdict("fail")) == "fail"  # type: ignore[arg-type]
    budget = Budget(failure_limit=1, inconclusive_limit=3)
    for _ in range(2):
        assert budget.record(verdict("inconclusive")) is None  # type: ignore[arg-type]
    assert budget.record(verdict("pass")) is None  # type: ignore[arg-type]
    for _ in range(2):
        assert budget.record(verdict("inconclusive")) is None  # type: ignore[arg-type]
    assert budget.record(verdict("inconclusive")) == "inconclusive"  # type: ignore[arg-type]


def reply(result: object, kind: str = "vector", status: str = "success") -> bytes:
    return json.dumps({"status": status, "data": {"resultType": kind, "result": result}}).encode()


def test_prometheus_replies_are_validated() -> None:
    assert parse_reply(reply([{"metric": {}, "value": [1, "0.25"]}])).value == 0.25
    assert parse_reply(reply([{"metric": {"a": "1"}, "value": [1, "1"]},
                              {"metric": {"a": "2"}, "value": [1, "2"]}])).value == 3.0
    assert parse_reply(reply([])).problem == "no series (no data)"
    assert parse_reply(reply([{"metric": {}, "value": [1, "NaN"]}])).value is None
    assert parse_reply(reply([1, "2"], kind="scalar")).value == 2.0
    assert parse_reply(reply([], kind="matrix")).value is None
    assert "bad_data" in (parse_reply(json.dumps({"status": "error", "errorType": "bad_data",
                                                   "error": "bad_data: parse"}).encode())
                          .problem or "")
    assert parse_reply(b"<html>").value is None
    assert parse_reply(b"[" * 100_000).value is None  # deep nesting: no RecursionError


class Recorded:
    """A metric source replaying recorded answers by query."""

    def __init__(self, answers: dict[str, Sample]) -> None:
        self.answers = answers
        self.asked: list[str] = []

    def query(self, promql: str, at: float | None = None) -> Sample:
        self.asked.append(promql)
        return self.answers.get(promql, Sample(None, "no series (no data)", promql))


def test_analyze_queries_both_sides_over_the_same_window() -> None:
    green, blue = 'proxy="web_green"', 'proxy="web_blue"'
    answers = {
        render(ERROR_RATIO, green, "30s"): Sample(0.03),
        render(ERROR_RATIO, blue, "30s"): Sample(0.0),
        'sum(increase(haproxy_backend_http_responses_total{proxy="web_green"}[30s]))':
            Sample(120.0),
        'sum(increase(haproxy_backend_http_responses_total{proxy="web_blue"}[30s]))':
            Sample(480.0),
    }
    source = Recorded(answers)
    result = analyze(source, [ERRORS], canary=green, baseline=blue, window="30s",
                     min_volume=50)
    assert result.verdict == "fail"
    measured = result.measurements[0]
    assert (measured.canary, measured.baseline, measured.canary_volume) == (0.03, 0.0, 120.0)
    assert measured.queries["canary"] == render(ERROR_RATIO, green, "30s")
    down = Recorded({})
    unreachable = analyze(down, [ERRORS], canary=green, baseline=blue, window="30s",
                          min_volume=50)
    assert unreachable.verdict == "inconclusive" and "no data" in unreachable.why


def test_counters_without_prometheus() -> None:
    before = {"blue": TrafficCounters(100, 0), "green": TrafficCounters(0, 0)}
    after = {"blue": TrafficCounters(400, 0), "green": TrafficCounters(100, 3)}
    args = {"canary": "green", "baseline": "blue", "specs": [ERRORS], "min_volume": 50}
    assert analyze_counters(before, after, **args).verdict == "fail"  # type: ignore[arg-type]
    quiet = {"blue": TrafficCounters(400, 0), "green": TrafficCounters(10, 0)}
    assert analyze_counters(before, quiet, **args).verdict == "inconclusive"  # type: ignore[arg-type]
    blind = {"blue": TrafficCounters(400, 0), "green": None}
    assert analyze_counters(before, blind, **args).verdict == "inconclusive"  # type: ignore[arg-type]
    fine = {"blue": TrafficCounters(400, 1), "green": TrafficCounters(300, 1)}
    assert analyze_counters(before, fine, **args).verdict == "pass"  # type: ignore[arg-type]
