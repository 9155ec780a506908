"""The bake's analysis against real parts: HAProxy 2.6's built-in Prometheus exporter,
scraped by a real Prometheus 2.42, user-like traffic to both sides at once; a patched side
that fails 3 % of requests or adds 300 ms is judged `fail` against its twin, a healthy one
`pass`, and a Prometheus that went away is `inconclusive`, never a pass."""

from __future__ import annotations

import random
import subprocess
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from orchestrator.analysis.analyze import analyze
from orchestrator.analysis.prometheus import PrometheusSource
from orchestrator.analysis.queries import DEFAULT_METRICS
from tests.support.haproxy_fixture import HAPROXY, free_port, wait_until
from tests.support.prometheus_fixture import Prometheus, running_prometheus

CONFIG = """\
global
    log stderr format raw local0 warning
defaults
    mode http
    timeout connect 2s
    timeout client 10s
    timeout server 10s
frontend stats
    bind 127.0.0.1:{metrics}
    http-request use-service prometheus-exporter if {{ path /metrics }}
frontend fe_blue
    bind 127.0.0.1:{fe_blue}
    default_backend web_blue
frontend fe_green
    bind 127.0.0.1:{fe_green}
    default_backend web_green
backend web_blue
    server blue1 127.0.0.1:{blue}
backend web_green
    server green1 127.0.0.1:{green}
"""


class Behaviour:
    error_ratio = 0.0
    delay_s = 0.0


class _Handler(BaseHTTPRequestHandler):
    server: Any

    def do_GET(self) -> None:  # noqa: N802
        behaviour: Behaviour = self.server.behaviour
        if behaviour.delay_s:
            time.sleep(behaviour.delay_s)
        failed = random.random() < behaviour.error_ratio
        body = b"oops\n" if failed else b"ok\n"
        self.send_response(500 if failed else 200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
        """Quiet."""


def _serve(behaviour: Behaviour) -> tuple[ThreadingHTTPServer, int]:
    port = free_port()
    server = ThreadingHTTPServer(("127.0.0.1", port), _Handler)
    server.daemon_threads = True
    server.behaviour = behaviour  # type: ignore[attr-defined]
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, port


class Setup:
    def __init__(self, prom: Prometheus, fronts: dict[str, int], green: Behaviour) -> None:
        self.prom, self.fronts, self.green = prom, fronts, green

    def traffic(self, seconds: float, rps: float = 20.0, threads: int = 1) -> None:
        """User-like traffic to both sides at once, `threads` clients per side, each at most
        `rps` requests a second (bounded in count and time)."""
        deadline = time.monotonic() + seconds

        def loop(port: int) -> None:
            for _ in range(int(seconds * rps) + 1):
                if time.monotonic() > deadline:
                    return
                try:
                    with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=5):
                        pass
                except (urllib.error.HTTPError, OSError):
                    pass
                time.sleep(1 / rps)

        clients = [threading.Thread(target=loop, args=(port,))
                   for port in self.fronts.values() for _ in range(threads)]
        for t in clients:
            t.start()
        for t in clients:
            t.join(timeout=seconds + 30)

    def judge(self) -> Any:
        return analyze(PrometheusSource(self.prom.url), DEFAULT_METRICS,
                       canary='proxy="web_green"', baseline='proxy="web_blue"', window="8s",
                       min_volume=50)


@pytest.fixture
def setup(tmp_path: Path) -> Iterator[Setup]:
    blue_b, green_b = Behaviour(), Behaviour()
    blue, blue_port = _serve(blue_b)
    green, green_port = _serve(green_b)
    ports = {"metrics": free_port(), "fe_blue": free_port(), "fe_green": free_port()}
    cfg = tmp_path / "haproxy.cfg"
    cfg.write_text(CONFIG.format(blue=blue_port, green=green_port, **ports))
    haproxy = subprocess.Popen([HAPROXY, "-W", "-db", "-f", str(cfg)],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                               start_new_session=True)
    try:
        wait_until(lambda: urllib.request.urlopen(
            f"http://127.0.0.1:{ports['metrics']}/metrics", timeout=2).status == 200, 15,
            "HAProxy's exporter")
        with running_prometheus(tmp_path, [f"127.0.0.1:{ports['metrics']}"]) as prom:
            prom.wait_for('up{job="haproxy"} == 1')
            yield Setup(prom, {"blue": ports["fe_blue"], "green": ports["fe_green"]}, green_b)
    finally:
        haproxy.terminate()
        haproxy.wait(timeout=10)
        for server in (blue, green):
            server.shutdown()
            server.server_close()


def test_verdicts_on_real_metrics(setup: Setup) -> None:
    # nothing served yet: no volume -> inconclusive, never a pass
    assert setup.judge().verdict == "inconclusive"
    # healthy on both sides: pass (light traffic: HAProxy's latency is an average over the
    # last 1024 requests, so the healthy phase must not outweigh the slow one below)
    setup.traffic(9, rps=10)
    healthy = setup.judge()
    assert healthy.verdict == "pass", healthy.as_dict()
    # +300 ms on every request of the patched side, no errors: fail on latency
    setup.green.delay_s = 0.3
    setup.traffic(9, rps=10, threads=12)
    slow = setup.judge()
    assert slow.verdict == "fail", slow.as_dict()
    assert [m.metric for m in slow.measurements if m.verdict == "fail"] == ["latency_seconds"]
    # the window's own mean: 0.305 s measured (HAProxy's sum only slides past its 512th
    # response; the query that assumed it slid from the first read 0.375 s here)
    latency = next(m for m in slow.measurements if m.metric == "latency_seconds")
    assert latency.canary is not None and 0.27 < latency.canary < 0.36, latency
    # the patched side fails about 10 % of requests (twin: none): fail, naming both values
    setup.green.error_ratio, setup.green.delay_s = 0.1, 0.0
    setup.traffic(9, rps=20, threads=2)
    errors = setup.judge()
    assert errors.verdict == "fail", errors.as_dict()
    ratio = next(m for m in errors.measurements if m.metric == "error_ratio")
    assert ratio.verdict == "fail" and ratio.canary is not None and ratio.canary > 0.03
    assert ratio.baseline == 0.0 and "vs twin 0" in ratio.why
    # Prometheus gone: inconclusive, the reason named
    setup.prom.stop()
    gone = setup.judge()
    assert gone.verdict == "inconclusive" and "cannot be reached" in gone.why
