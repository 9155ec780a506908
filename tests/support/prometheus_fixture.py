"""A real Prometheus (Debian's 2.42) on loopback scraping the given targets every second.

    with running_prometheus(tmp, ["127.0.0.1:9101"]) as prom:
        prom.url                          # http://127.0.0.1:PORT
        prom.wait_for("up == 1")

Only the PID started here is signalled; its TSDB lives in `tmp`.
"""

from __future__ import annotations

import json
import subprocess
import urllib.parse
import urllib.request
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from tests.support.haproxy_fixture import free_port, wait_until

PROMETHEUS = "/usr/bin/prometheus"


@dataclass
class Prometheus:
    url: str
    process: subprocess.Popen[bytes]
    log: Path

    def value(self, promql: str) -> float | None:
        query = urllib.parse.urlencode({"query": promql})
        with urllib.request.urlopen(f"{self.url}/api/v1/query?{query}", timeout=5) as reply:
            result = json.loads(reply.read())["data"]["result"]
        return float(result[0]["value"][1]) if result else None

    def wait_for(self, promql: str, timeout: float = 30.0) -> float:
        found: float = wait_until(lambda: self.value(promql), timeout, f"Prometheus: {promql}",
                                  step=0.5)
        return found

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=5)


@contextmanager
def running_prometheus(tmp: Path, targets: Sequence[str]) -> Iterator[Prometheus]:
    directory = tmp / "prometheus"
    directory.mkdir()
    config = {
        "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
        "scrape_configs": [{"job_name": "haproxy", "static_configs": [{"targets":
                                                                         list(targets)}]}],
    }
    (directory / "prometheus.yml").write_text(json.dumps(config))  # JSON is YAML
    port = free_port()
    log = directory / "prometheus.log"
    process = subprocess.Popen(
        [PROMETHEUS, f"--config.file={directory / 'prometheus.yml'}",
         f"--storage.tsdb.path={directory / 'data'}", f"--web.listen-address=127.0.0.1:{port}"],
        stdout=subprocess.DEVNULL, stderr=log.open("wb"))
    prom = Prometheus(f"http://127.0.0.1:{port}", process, log)
    try:
        def ready() -> bool:
            assert process.poll() is None, log.read_text()[-2000:]
            with urllib.request.urlopen(f"{prom.url}/-/ready", timeout=2) as reply:
                return reply.status == 200

        wait_until(ready, 30, "Prometheus to be ready", step=0.2)
        yield prom
    finally:
        prom.stop()
