"""Default PromQL for HAProxy's built-in exporter (Debian's HAProxy 2.6), per side.

`{selector}` is the side's label selector (e.g. `proxy="web_green"`), `{window}` the
step's window (e.g. `30s`; at least two scrape intervals, or `rate` has no data).
HAProxy 2.6 keeps no latency histogram: its `..._response_time_average_seconds` is a sliding
average updated per response, avg += (t - avg) / 512 (measured on the lab: it climbs by
t/512 per response from zero). The window's own mean response time m is solved from the
gauge at the window's start (A0) and end (A1) and the n responses between:
A1 = A0 * k + m * (1 - k), k = (511/512)^n; so earlier responses of the same backend (an
earlier step, an earlier version) do not dilute the window, and no responses is NaN (no
data).
"""

from __future__ import annotations

from orchestrator.analysis.model import MetricSpec

VOLUME = "sum(increase(haproxy_backend_http_responses_total{{selector}}[{window}]))"
ERROR_RATIO = (
    'sum(rate(haproxy_backend_http_responses_total{{selector},code="5xx"}[{window}]))'
    " / sum(rate(haproxy_backend_http_responses_total{{selector}}[{window}]))"
)
_AVG = "max(haproxy_backend_response_time_average_seconds{{selector}}"
_KEEP = "(511 / 512) ^ " + VOLUME
LATENCY = f"({_AVG}) - {_AVG} offset {{window}}) * {_KEEP}) / (1 - {_KEEP})"

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
