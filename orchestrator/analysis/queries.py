"""Default PromQL for HAProxy's built-in exporter (Debian's HAProxy 2.6), per side.

`{selector}` is the side's label selector (e.g. `proxy="web_green"`), `{window}` the
step's window (e.g. `30s`; at least two scrape intervals, or `rate` has no data).
HAProxy 2.6 keeps no latency histogram, but a sum S of its backend's response times: it only
grows up to the 512th response, then slides (S += t - S / 512 per response). Its
Prometheus exporter shows S / 512 (`..._response_time_average_seconds`: it climbs by t/512
per response from zero); `show stat`'s `rtime` shows S / min(N, 512) (the plain mean of the
first 512). The window's own mean response time is solved from S and the response count N
at the window's start and end (`window_mean`), so earlier responses of the same backend (an
earlier step, an earlier version) do not dilute the window, and no responses is NaN (no
data). `LATENCY` is `window_mean` in PromQL; the counters path (no Prometheus) calls
`window_mean` on two readings of `show stat` (`rtime_sum`).
"""

from __future__ import annotations

from orchestrator.analysis.model import MetricSpec

VOLUME = "sum(increase(haproxy_backend_http_responses_total{{selector}}[{window}]))"
ERROR_RATIO = (
    'sum(rate(haproxy_backend_http_responses_total{{selector},code="5xx"}[{window}]))'
    " / sum(rate(haproxy_backend_http_responses_total{{selector}}[{window}]))"
)


SAMPLES = 512
"""HAProxy's TIME_STATS_SAMPLES: the window of its average response time."""


def window_mean(sum_before: float, sum_after: float, count_before: float,
                count_after: float) -> float | None:
    """The mean response time of the responses a backend answered between two readings of
    HAProxy's sum of response times (`sum_before`, `sum_after`, see the module docstring),
    taken when it had answered `count_before` and `count_after` responses; None for none.

    With a constant mean m in the window, `first` of its responses still before the 512th
    (the sum only grows) and k = (511/512)^(the others) (it slides):
    S1 = S0 k + m (first k + 512 (1 - k)), solved for m. Checked on a real HAProxy 2.6.12
    (tests/unit/analysis/test_counters_latency.py, test_analysis_prometheus.py)."""
    responses = count_after - count_before
    if responses <= 0:
        return None
    first = max(SAMPLES - count_before, 0) - max(SAMPLES - count_after, 0)
    keep: float = (1 - 1 / SAMPLES) ** (responses - first)
    return (sum_after - sum_before * keep) / (first * keep + SAMPLES * (1 - keep))


def rtime_sum(rtime: float, responses: float) -> float:
    """HAProxy's sum of response times from `show stat`'s `rtime` (S / min(N, 512))."""
    return rtime * min(responses, SAMPLES)


_AVG = "max(haproxy_backend_response_time_average_seconds{{selector}}AT)"
_COUNT = "sum(haproxy_backend_http_responses_total{{selector}}AT)"


def _latency() -> str:
    """`window_mean` in PromQL: S = 512 x the exporter's average; S0, N0 at the window's
    start (`offset`), S1, N1 now."""
    s1, s0 = _AVG.replace("AT", ""), _AVG.replace("AT", " offset {window}")
    n1, n0 = _COUNT.replace("AT", ""), _COUNT.replace("AT", " offset {window}")
    first = f"(clamp_min(512 - {n0}, 0) - clamp_min(512 - {n1}, 0))"
    keep = f"((511 / 512) ^ (clamp_min({n1} - 512, 0) - clamp_min({n0} - 512, 0)))"
    return f"512 * ({s1} - {s0} * {keep}) / ({first} * {keep} + 512 * (1 - {keep}))"


LATENCY = _latency()

DEFAULT_METRICS = (
    MetricSpec("error_ratio", ERROR_RATIO, relative=0.5, floor=0.01, max_value=0.05),
    MetricSpec("latency_seconds", LATENCY, relative=0.5, floor=0.1),
)
"""Error ratio: worse than the twin by 50 % and by 1 point, or over 5 %, fails. Latency:
worse than the twin by 50 % and by 100 ms fails."""


def render(template: str, selector: str, window: str) -> str:
    """`{selector}` and `{window}` replaced; every other brace is PromQL's own (so a
    template in bluegreen.yml is written as Prometheus reads it, braces not doubled)."""
    return template.replace("{selector}", selector).replace("{window}", window)
