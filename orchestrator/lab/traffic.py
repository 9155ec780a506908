"""User-like traffic for the lab (`bluegreen lab traffic`): GET requests through a service's
frontend at a steady rate for a bounded time, counted by the backend that answered (the
frontend's `X-Bluegreen-Backend` header) and by status class, with latencies. Loopback
frontends only: it never sends anything beyond this machine."""

from __future__ import annotations

import ipaddress
import statistics
import threading
import time
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from orchestrator.errors import BadInput
from orchestrator.routers.confirm import backend_header

MAX_RPS = 1000
MAX_SECONDS = 3600
HEADER = "X-Bluegreen-Backend"


@dataclass
class TrafficReport:
    url: str
    sent: int = 0
    failed: int = 0
    """No HTTP answer at all (connection refused, reset, timeout)."""
    by_backend: dict[str, Counter[str]] = field(default_factory=dict)
    """backend -> status class ("2xx", "5xx", ...) -> count."""
    latencies: list[float] = field(default_factory=list)
    seconds: float = 0.0
    log: list[tuple[float, str, str]] = field(default_factory=list)
    """Every answered request: (when it was sent, `time.time()`, backend, status class)."""

    def as_dict(self) -> dict[str, Any]:
        lat = sorted(self.latencies)
        return {
            "url": self.url, "sent": self.sent, "failed": self.failed,
            "seconds": round(self.seconds, 2),
            "by_backend": {b: dict(c) for b, c in sorted(self.by_backend.items())},
            "latency_ms": {
                "p50": round(statistics.median(lat) * 1000, 1) if lat else None,
                "p95": round(lat[int(len(lat) * 0.95) - 1] * 1000, 1) if len(lat) >= 20
                else None,
            },
        }


def loopback_url(url: str) -> str:
    """`url` when it points at a loopback address; BadInput otherwise."""
    host = urlsplit(url).hostname or ""
    try:
        loop = host == "localhost" or ipaddress.ip_address(host).is_loopback
    except ValueError:
        loop = False
    if not loop:
        raise BadInput(f"{url}: lab traffic goes to loopback frontends only",
                       hint="use the lab's frontend (`bluegreen lab status`)")
    return url


def send(url: str, rps: float, seconds: float, *, timeout: float = 5.0,
         workers: int = 16) -> TrafficReport:
    """GET `url` `rps` times a second for `seconds` (bounded), concurrently."""
    if not 0 < rps <= MAX_RPS or not 0 < seconds <= MAX_SECONDS:
        raise BadInput(f"--rps {rps} --seconds {seconds}: out of range",
                       hint=f"0 < rps <= {MAX_RPS}, 0 < seconds <= {MAX_SECONDS}")
    loopback_url(url)
    report = TrafficReport(url)
    lock = threading.Lock()
    total = int(rps * seconds)

    def one() -> None:
        sent_at = time.time()
        started = time.perf_counter()
        try:
            status, backend = backend_header(url, HEADER, timeout)
        except (OSError, ValueError):
            with lock:
                report.failed += 1
            return
        elapsed = time.perf_counter() - started
        with lock:
            report.by_backend.setdefault(backend or "-", Counter())[f"{status // 100}xx"] += 1
            report.latencies.append(elapsed)
            report.log.append((sent_at, backend or "-", f"{status // 100}xx"))

    began = time.monotonic()
    with ThreadPoolExecutor(max_workers=workers) as pool:
        for i in range(total):
            delay = began + i / rps - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            pool.submit(one)
            report.sent += 1
    report.seconds = time.monotonic() - began
    return report


@contextmanager
def background(url: str, rps: float, seconds: float) -> Iterator[TrafficReport]:
    """`send` second after second in a thread while the block runs (at most `seconds`):
    users beside a rollout. The report is complete when the block ends."""
    report = TrafficReport(url)
    stop = threading.Event()

    def run() -> None:
        deadline = time.monotonic() + seconds
        while not stop.is_set() and time.monotonic() < deadline:
            part = send(url, rps, 1.0)
            report.sent += part.sent
            report.failed += part.failed
            report.log.extend(part.log)
            report.latencies.extend(part.latencies)
            for backend, classes in part.by_backend.items():
                report.by_backend.setdefault(backend, Counter()).update(classes)

    loopback_url(url)
    thread = threading.Thread(target=run, daemon=True)
    began = time.monotonic()
    thread.start()
    try:
        yield report
    finally:
        stop.set()
        thread.join(timeout=30)
        report.seconds = time.monotonic() - began
