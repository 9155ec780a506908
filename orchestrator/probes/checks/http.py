"""`http`: a URL per host, fetched from the orchestrator: status, body, latency.

In bluegreen.yml (one item of a service's `checks:`)::

    - {kind: http, url: "http://{host}:8080/health", expect_status: 200, body_contains: ok,
       max_latency_ms: 500}
"""

from __future__ import annotations

import re
import time
import urllib.error
import urllib.request
from collections.abc import Iterable
from typing import Any, Literal

from orchestrator.probes.base import ProbeTarget
from orchestrator.probes.checks.base import BaseCheck, Outcome


class HttpCheck(BaseCheck):
    """Fetched from the orchestrator (not from the host) with urllib."""

    kind: Literal["http"]
    url: str
    expect_status: int = 200
    body_contains: str | None = None
    body_regex: str | None = None
    max_latency_ms: float | None = None
    timeout_s: float = 5.0

    def primary_id(self) -> str:
        return self._single_id(self.url)

    def outcomes(self, host: Any, target: ProbeTarget) -> Iterable[Outcome]:
        url = self.url.format(host=target.address, name=target.name)
        cid = self.primary_id()
        start = time.monotonic()
        try:
            with urllib.request.urlopen(url, timeout=self.timeout_s) as resp:  # noqa: S310
                status = int(resp.status)
                body = resp.read(1 << 20)
        except urllib.error.HTTPError as exc:
            status = int(exc.code)
            body = exc.read(1 << 20) if exc.fp is not None else b""
        except (urllib.error.URLError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            yield cid, "fail", f"GET {url} failed: {reason}"
            return
        ms = (time.monotonic() - start) * 1000
        text = body.decode(errors="replace")
        problems: list[str] = []
        if status != self.expect_status:
            problems.append(f"status {status} != {self.expect_status}")
        if self.body_contains is not None and self.body_contains not in text:
            problems.append(f"body does not contain {self.body_contains!r}")
        if self.body_regex is not None and not re.search(self.body_regex, text, re.M):
            problems.append(f"body does not match /{self.body_regex}/")
        if self.max_latency_ms is not None and ms > self.max_latency_ms:
            problems.append(f"latency {ms:.0f} ms > {self.max_latency_ms:.0f} ms")
        if problems:
            yield cid, "fail", f"GET {url}: " + "; ".join(problems)
        else:
            yield cid, "pass", f"GET {url}: status {status} in {ms:.0f} ms"
