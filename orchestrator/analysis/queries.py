"""Default PromQL for HAProxy's built-in exporter (Debian's HAProxy 2.6), per side.

`{selector}` is the side's label selector (e.g. `proxy="web_green"`), `{window}` the
step's window (e.g. `30s`; at least two scrape intervals, or `rate` has no data).
HAProxy 2.6 keeps no latency histogram: latency is its own average response time over the
side's last 1024 responses (`..._response_time_average_seconds`), read at the end of the
window (a standby took no user traffic before the step, so those are the step's responses;
averaging the gauge over the window would mostly measure the time before the change).
"""

from __future__ import annotations

from orchestrator.analysis.model import MetricSpec

VOLUME = "sum(increase(haproxy_backend_http_responses_total{{selector}}[{window}]))"
ERROR_RATIO = (
    'sum(rate(haproxy_backend_http_responses_total{{selector},code="5xx"}[{window}]))'
    " / sum(rate(haproxy_backend_http_responses_total{{selector}}[{window}]))"
)
LATENCY = "max(haproxy_backend_response_time_average_seconds{{selector}})"

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
