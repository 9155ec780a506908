"""Zero-drop flips under load: continuous HTTP traffic through HAProxy while bluegreen flips
the service back and forth with the real CLI (`flip --to OTHER --force`, then `rollback`).

Usage (lab up, as root):
  .venv/bin/python benchmarks/flip_load.py [--config FILE] [--service web] [--cycles 20]
      [--workers 4] [--json]

Each cycle is two real commands: `flip --to OTHER --force` (an audited override: after the
first rollback the other side is failed_live, which the gate refuses) and `rollback`. The load generator is ours: W threads, one new connection per request (loopback only), bounded in
request count and time. Prints requests sent and failed, p50/p99 latency, flips done.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from orchestrator.lab.paths import LabPaths

LAB_CONFIG = Path(os.environ.get("BLUEGREEN_CONFIG") or LabPaths.default().config)
BLUEGREEN = [sys.executable, "-m", "orchestrator"]


@dataclass
class LoadGenerator:
    """W threads sending GETs to `url` until stopped, `max_requests` or `max_seconds`."""

    url: str
    workers: int = 4
    max_requests: int = 200_000
    max_seconds: float = 300.0
    sent: int = 0
    failed: int = 0
    errors: list[str] = field(default_factory=list)
    latencies: list[float] = field(default_factory=list)
    backends: dict[str, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._threads = [
            threading.Thread(target=self._run, daemon=True) for _ in range(self.workers)
        ]
        self._started = 0.0

    def _run(self) -> None:
        while not self._stop.is_set():
            with self._lock:
                if (
                    self.sent >= self.max_requests
                    or time.monotonic() - self._started > self.max_seconds
                ):
                    return
                self.sent += 1
            t0 = time.perf_counter()
            backend, error = "", ""
            try:
                with urllib.request.urlopen(self.url, timeout=5) as resp:  # noqa: S310
                    resp.read()
                    backend = resp.headers.get("X-Bluegreen-Backend", "")
            except (urllib.error.URLError, OSError) as exc:
                error = f"{type(exc).__name__}: {exc}"
            elapsed = time.perf_counter() - t0
            with self._lock:
                self.latencies.append(elapsed)
                if error:
                    self.failed += 1
                    if len(self.errors) < 20:
                        self.errors.append(error)
                else:
                    self.backends[backend] = self.backends.get(backend, 0) + 1

    def __enter__(self) -> LoadGenerator:
        self._started = time.monotonic()
        for t in self._threads:
            t.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for t in self._threads:
            t.join(timeout=15)

    def percentile_ms(self, pct: float) -> float:
        if not self.latencies:
            return 0.0
        ordered = sorted(self.latencies)
        k = max(0, min(len(ordered) - 1, round(pct / 100 * (len(ordered) - 1))))
        return ordered[k] * 1000


def cli(config: Path, *args: str) -> dict[str, Any]:
    proc = subprocess.run(
        [*BLUEGREEN, "-c", str(config), *args, "--json"],
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    if proc.returncode != 0:
        raise RuntimeError(
            f"bluegreen {' '.join(args)} failed ({proc.returncode}): "
            f"{proc.stdout.strip()} {proc.stderr.strip()}"
        )
    doc: dict[str, Any] = json.loads(proc.stdout)
    return doc


def frontend_of(config: Path, service: str) -> str:
    import yaml

    doc = yaml.safe_load(config.read_text())
    return str(doc["router"]["frontends"][service]).rstrip("/")


def flip_under_load(
    config: Path, service: str = "web", cycles: int = 20, workers: int = 4
) -> dict[str, Any]:
    """`cycles` x (flip to the other side, then rollback), under continuous load."""
    url = frontend_of(config, service) + "/"
    flips = rollbacks = 0
    started = time.monotonic()
    with LoadGenerator(url, workers=workers) as load:
        time.sleep(0.5)
        live = cli(config, "status", service)["live"]
        for i in range(cycles):
            other = "green" if live == "blue" else "blue"
            # a forced flip: the other side is untouched (cycle 1) or failed_live (after a
            # rollback), which the gate refuses without the audited override
            doc = cli(config, "flip", service, "--to", other, "--force", "--reason",
                      f"load flip {i}")
            assert doc["changed"], doc
            flips += 1
            time.sleep(0.2)
            doc = cli(config, "rollback", service, "--reason", f"load rollback {i}")
            assert doc["changed"] and doc["to"] == live, doc
            rollbacks += 1
            time.sleep(0.2)
        time.sleep(0.5)
    seconds = time.monotonic() - started
    return {
        "service": service,
        "flips": flips,
        "rollbacks": rollbacks,
        "sent": load.sent,
        "failed": load.failed,
        "errors": load.errors[:5],
        "p50_ms": round(load.percentile_ms(50), 2),
        "p99_ms": round(load.percentile_ms(99), 2),
        "backends": load.backends,
        "seconds": round(seconds, 1),
        "workers": workers,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--config", type=Path, default=LAB_CONFIG)
    ap.add_argument("--service", default="web")
    ap.add_argument("--cycles", type=int, default=20)
    ap.add_argument("--workers", type=int, default=4)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    out = flip_under_load(args.config, args.service, args.cycles, args.workers)
    if args.json:
        print(json.dumps(out, indent=2))
    else:
        print(
            f"{out['flips']} flips + {out['rollbacks']} rollbacks in {out['seconds']} s under "
            f"load ({out['workers']} workers): {out['sent']} requests, {out['failed']} failed, "
            f"p50 {out['p50_ms']} ms, p99 {out['p99_ms']} ms; served by {out['backends']}"
        )
    if out["failed"]:
        raise SystemExit(1)


if __name__ == "__main__":
    main()
