"""The counters path (no Prometheus) judges latency too: HAProxy's `show stat` (recorded
from a real HAProxy 2.6.12: 31 requests of ~1 ms, then 30 more with the backend answering
300 ms late, as issue 23's demo-web 1.1.3) read by the real router, the window's mean solved from its average
(`queries.window_mean`, checked against a simulation of HAProxy's own sum across its 512th
response, as `show stat` and as the Prometheus exporter show it), and the verdicts on a slow patched side, a healthy one, and a load
balancer that keeps no times."""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from orchestrator.analysis.analyze import analyze_counters
from orchestrator.analysis.queries import DEFAULT_METRICS, SAMPLES, rtime_sum, window_mean
from orchestrator.routers.base import TrafficCounters
from tests.unit.doctor.test_haproxy_readiness import ScriptedTransport, router

RECORDED = Path(__file__).with_name("recorded")
ERRORS, LATENCY = DEFAULT_METRICS


class ShowStat(ScriptedTransport):
    """`show stat` answered from a recorded reply."""

    def __init__(self, reply: str) -> None:
        super().__init__()
        self.reply = reply

    def command(self, line: str) -> str:
        assert line == "show stat", line
        return self.reply


def read(name: str, side: str) -> TrafficCounters | None:
    return router(ShowStat((RECORDED / name).read_text())).counters("web", side)  # type: ignore[arg-type]


def test_show_stat_gives_responses_errors_and_the_average_response_time() -> None:
    before = read("show_stat_31_fast.csv", "blue")
    after = read("show_stat_then_30_slow.csv", "blue")
    assert before == TrafficCounters(31, 0, 1.0)
    assert after == TrafficCounters(61, 0, 153.0)
    assert after.as_dict() == {"responses": 61, "errors_5xx": 0, "response_ms": 153.0}
    assert read("show_stat_then_30_slow.csv", "green") == TrafficCounters(0, 0, 0.0)
    # the 30 slow responses' own mean, not the diluted average (153) nor the naive
    # solution of a sliding average (~2.7 s: HAProxy only slides past 512 responses)
    mean = window_mean(rtime_sum(1.0, 31), rtime_sum(153.0, 61), 31, 61)
    assert mean == pytest.approx(310.0, abs=0.1)


def haproxy_sums(times: list[int]) -> list[int]:
    """HAProxy 2.6's sum of response times after each response: it only grows up to the
    512th response, then slides, sum += t - ceil(sum / 512) (swrate_add_dynamic)."""
    total, sums = 0, []
    for n, t in enumerate(times, 1):
        total = total + t - ((total + SAMPLES - 1) // SAMPLES if n > SAMPLES else 0)
        sums.append(total)
    return sums


@pytest.mark.parametrize(("start", "length"), [(0, 40), (100, 60), (480, 80), (700, 40),
                                               (2000, 200)])
def test_window_mean_solves_haproxys_sum_before_at_and_past_512(start: int,
                                                                length: int) -> None:
    """Both views of the sum: `show stat`'s rtime (S / min(N, 512)) and the exporter's
    average (S / 512), each in whole milliseconds as HAProxy shows them."""
    rng = random.Random(start)
    times = [rng.randint(1, 20) for _ in range(start)] + \
        [rng.randint(280, 320) for _ in range(length)]
    sums = haproxy_sums(times)
    s0, s1 = (sums[start - 1] if start else 0), sums[-1]
    n0, n1 = start, start + length
    truth = sum(times[start:]) / length
    rtime = window_mean(rtime_sum(s0 // max(min(n0, SAMPLES), 1), n0),
                        rtime_sum(s1 // min(n1, SAMPLES), n1), n0, n1)
    exporter = window_mean(SAMPLES * (s0 // SAMPLES), SAMPLES * (s1 // SAMPLES), n0, n1)
    for mean in (rtime, exporter):
        # whole milliseconds shown: the error is about a millisecond over (1 - k)
        assert mean is not None and mean == pytest.approx(truth, rel=0.1), (mean, truth)
    assert window_mean(5.0, 5.0, 100, 100) is None  # no responses: no data


def counters(responses: int, errors: int, ms: float | None) -> TrafficCounters:
    return TrafficCounters(responses, errors, ms)


def test_a_slow_patched_side_fails_on_latency_without_prometheus() -> None:
    args = {"canary": "green", "baseline": "blue", "specs": (ERRORS, LATENCY),
            "min_volume": 20}
    before = {"blue": counters(1000, 0, 3.0), "green": counters(31, 0, 1.0)}
    slow = {"blue": counters(1100, 0, 3.0), "green": counters(61, 0, 153.0)}  # recorded
    judged = analyze_counters(before, slow, **args)  # type: ignore[arg-type]
    assert judged.verdict == "fail" and "latency_seconds" in judged.why
    latency = next(m for m in judged.measurements if m.metric == "latency_seconds")
    assert latency.canary == pytest.approx(0.310, abs=1e-3)
    assert latency.baseline == pytest.approx(0.003)
    assert latency.queries["canary"] == "load balancer counters (latency_seconds) of green"
    healthy = {"blue": counters(1100, 0, 3.0), "green": counters(61, 0, 2.0)}
    assert analyze_counters(before, healthy, **args).verdict == "pass"  # type: ignore[arg-type]
    # a restart between the readings (counters back to zero): no latency, never a pass
    restarted = {"blue": counters(1100, 0, 3.0), "green": counters(25, 0, 2.0)}
    judged = analyze_counters(before, restarted, **args)  # type: ignore[arg-type]
    assert judged.verdict == "inconclusive" and "latency_seconds" in judged.why


def test_a_load_balancer_without_times_is_judged_on_errors_alone() -> None:
    args = {"canary": "green", "baseline": "blue", "specs": (ERRORS, LATENCY),
            "min_volume": 20}
    before = {"blue": TrafficCounters(100, 0), "green": TrafficCounters(0, 0)}
    after = {"blue": TrafficCounters(400, 0), "green": TrafficCounters(100, 0)}
    judged = analyze_counters(before, after, **args)  # type: ignore[arg-type]
    assert judged.verdict == "pass"
    assert [m.metric for m in judged.measurements] == ["error_ratio"]
