"""Prometheus as a metric source: one instant query (`GET /api/v1/query`) per value, over
its HTTP API, standard library only. Every answer is validated: an unreachable server, an
error status, a non-vector result, an empty result (no series) or "NaN" is None with the
reason, never a number made up (the judge then says inconclusive)."""

from __future__ import annotations

import json
import math
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass

MAX_REPLY_BYTES = 4 * 1024 * 1024
NO_SERIES = "no series (no data)"


@dataclass(frozen=True)
class Sample:
    value: float | None
    """None: no usable value (see `problem`)."""
    problem: str | None = None
    query: str = ""


class PrometheusSource:
    def __init__(self, url: str, *, timeout: float = 5.0) -> None:
        self.url = url.rstrip("/")
        self.timeout = timeout

    def query(self, promql: str, at: float | None = None) -> Sample:
        """The single value of `promql` (summed over series when several come back)."""
        params = {"query": promql}
        if at is not None:
            params["time"] = f"{at:.3f}"
        url = f"{self.url}/api/v1/query?{urllib.parse.urlencode(params)}"
        try:
            with urllib.request.urlopen(url, timeout=self.timeout) as reply:  # noqa: S310
                raw = reply.read(MAX_REPLY_BYTES + 1)
        except urllib.error.HTTPError as exc:
            raw = exc.read(MAX_REPLY_BYTES + 1) if exc.fp is not None else b""
            return Sample(None, f"Prometheus answered HTTP {exc.code}: {_error(raw)}", promql)
        except (OSError, ValueError) as exc:
            return Sample(None, f"Prometheus cannot be reached at {self.url}: {exc}", promql)
        if len(raw) > MAX_REPLY_BYTES:
            return Sample(None, f"Prometheus's answer is over {MAX_REPLY_BYTES} bytes", promql)
        return parse_reply(raw, promql)


def parse_reply(raw: bytes, promql: str = "") -> Sample:
    try:
        doc = json.loads(raw)
    except (ValueError, RecursionError):
        return Sample(None, "Prometheus's answer is not JSON", promql)
    if not isinstance(doc, dict) or doc.get("status") != "success":
        return Sample(None, f"Prometheus says: {_error(raw)}", promql)
    data = doc.get("data")
    if not isinstance(data, dict):
        return Sample(None, "Prometheus's answer has no data", promql)
    kind, result = data.get("resultType"), data.get("result")
    if kind == "scalar" and isinstance(result, list) and len(result) == 2:
        return _value(result[1], promql)
    if kind != "vector" or not isinstance(result, list):
        return Sample(None, f"expected an instant vector, got {kind!r}", promql)
    if not result:
        return Sample(None, NO_SERIES, promql)
    total = 0.0
    for series in result:
        value = series.get("value") if isinstance(series, dict) else None
        if not isinstance(value, list) or len(value) != 2:
            return Sample(None, "a series without a value", promql)
        one = _value(value[1], promql)
        if one.value is None:
            return one
        total += one.value
    return Sample(total, None, promql)


def _value(text: object, promql: str) -> Sample:
    try:
        value = float(str(text))
    except ValueError:
        return Sample(None, f"not a number: {str(text)[:40]!r}", promql)
    if math.isnan(value) or math.isinf(value):
        return Sample(None, f"the value is {text}", promql)
    return Sample(value, None, promql)


def _error(raw: bytes) -> str:
    try:
        doc = json.loads(raw)
        return str(doc.get("error") or doc.get("status"))[:200]
    except (ValueError, RecursionError, AttributeError):
        return raw[:200].decode("utf-8", "replace")
