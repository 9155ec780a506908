"""The lab's Prometheus (Debian's `prometheus` package): scrapes HAProxy's built-in
exporter and every host's demo-web (`/metrics`: requests by code, a duration histogram,
labelled with the host's service and side) every second, so the bake's analysis runs on
real metrics. Runs as a plain process
of the lab (PID 1 may not be systemd), on loopback, its data under the lab's root."""

from __future__ import annotations

import json
import subprocess
import time
import urllib.request
from collections.abc import Sequence

from orchestrator.errors import LabError
from orchestrator.lab.hosts import HostSpec
from orchestrator.lab.paths import LabPaths

PROMETHEUS = "/usr/bin/prometheus"


def url(paths: LabPaths) -> str:
    return f"http://127.0.0.1:{paths.prometheus_port}"


def start(paths: LabPaths, hosts: Sequence[HostSpec] = ()) -> int:
    """Write the config and start Prometheus; the PID."""
    paths.prometheus.mkdir(parents=True, exist_ok=True)
    config = {
        "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
        "scrape_configs": [{
            "job_name": "haproxy",
            "static_configs": [{"targets": [f"127.0.0.1:{paths.haproxy_metrics_port}"]}],
        }, {
            "job_name": "hosts",
            "static_configs": [{"targets": [f"{h.address}:8080"],
                                "labels": {"host": h.name, "service": h.service,
                                           "side": h.side}} for h in hosts],
        }],
    }
    cfg = paths.prometheus / "prometheus.yml"
    cfg.write_text(json.dumps(config, indent=2))  # JSON is YAML
    log = paths.logs / "prometheus.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "ab") as out:
        proc = subprocess.Popen(
            [PROMETHEUS, f"--config.file={cfg}",
             f"--storage.tsdb.path={paths.prometheus / 'data'}",
             f"--web.listen-address=127.0.0.1:{paths.prometheus_port}",
             "--storage.tsdb.retention.time=1d"],
            stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    return proc.pid


def wait_ready(paths: LabPaths, timeout: float = 60.0) -> None:
    """Until Prometheus answers and has scraped HAProxy once; LabError after `timeout`."""
    deadline = time.monotonic() + timeout
    query = f"{url(paths)}/api/v1/query?query=up%7Bjob%3D%22haproxy%22%7D"
    last = "no answer"
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(query, timeout=2) as reply:  # noqa: S310
                result = json.loads(reply.read())["data"]["result"]
            if result and result[0]["value"][1] == "1":
                return
            last = f"up{{job=haproxy}} = {result}"
        except (OSError, ValueError, KeyError) as exc:
            last = str(exc)
        time.sleep(0.5)
    raise LabError(f"the lab's Prometheus did not scrape HAProxy within {timeout:.0f} s "
                   f"({last})", hint=f"see {paths.logs / 'prometheus.log'}")
