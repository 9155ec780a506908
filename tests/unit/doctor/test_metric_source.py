"""`bluegreen doctor` names the metric source of each service baked in steps and fails it
when it cannot be read (every step would be inconclusive): a loopback Prometheus API that
answers, one that is gone, the load balancer's counters readable or not, doctor's JSON."""

from __future__ import annotations

import json
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from orchestrator.cli.app import main
from orchestrator.config.loaded import load_config
from orchestrator.doctor.metrics import PROBE_QUERY, metric_source_checks
from orchestrator.routers.base import TrafficCounters
from orchestrator.testing import FakeRouter, fake_config
from tests.support.loopback_http import serving

VECTOR_ONE = {"status": "success",
              "data": {"resultType": "vector", "result": [{"metric": {}, "value": [0, "1"]}]}}


@pytest.fixture
def prometheus() -> Iterator[dict[str, Any]]:
    """A loopback stand-in of Prometheus's query API; `state["queries"]`: what it was asked."""
    state: dict[str, Any] = {"queries": []}

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 - http.server's name
            from urllib.parse import parse_qs, urlsplit

            parts = urlsplit(self.path)
            state["queries"].append((parts.path, parse_qs(parts.query).get("query")))
            body = json.dumps(VECTOR_ONE).encode()
            self.send_response(200 if parts.path == "/api/v1/query" else 404)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *_args: Any) -> None:
            """Quiet."""

    with serving(Handler) as url:
        state["url"] = url
        yield state


def with_steps(tmp_path: Path, source: str, services: tuple[str, ...] = ("web",)) -> Any:
    """fake_config's bluegreen.yml, `web` baked in steps judged from `source`."""
    config = fake_config(tmp_path, services)
    doc = json.loads(config.path.read_text())
    doc["services"]["web"]["bake"] = {
        "steps": [{"percent": 20, "seconds": 5}, {"percent": 100, "seconds": 5}],
        "analysis": {"source": source}}
    config.path.write_text(json.dumps(doc))
    return load_config(config.path)


def test_a_prometheus_that_answers_is_named(tmp_path: Path, prometheus: Any) -> None:
    config = with_steps(tmp_path, prometheus["url"], ("web", "api"))
    checks = metric_source_checks(config, FakeRouter(), ["web", "api"])
    assert [c.name for c in checks] == ["metric source web"]  # api: no steps, no check
    assert checks[0].ok is True
    assert prometheus["url"] in checks[0].detail and "/api/v1/query" in checks[0].detail
    assert prometheus["queries"] == [("/api/v1/query", [PROBE_QUERY])]


def test_a_prometheus_that_is_gone_fails_with_the_fix(tmp_path: Path,
                                                      prometheus: Any) -> None:
    config = with_steps(tmp_path, prometheus["url"] + "/nothing-here")
    (check,) = metric_source_checks(config, FakeRouter(), ["web"])
    assert check.ok is False and "HTTP 404" in check.detail
    assert "never promote" in check.detail
    assert "services.web.bake.analysis.source" in check.fix
    config = with_steps(tmp_path, "http://127.0.0.1:9")  # discard port: nothing listens
    (check,) = metric_source_checks(config, FakeRouter(), ["web"])
    assert check.ok is False and "cannot be reached" in check.detail


def test_the_load_balancers_counters_readable_or_not(tmp_path: Path) -> None:
    config = with_steps(tmp_path, "counters")
    counted = FakeRouter()
    counted.counted = {("web", s): TrafficCounters(10, 0) for s in ("blue", "green")}
    (check,) = metric_source_checks(config, counted, ["web"])
    assert check.ok is True and "load balancer's counters" in check.detail
    assert "error ratio judged, latency not" in check.detail  # no times kept
    counted.counted = {("web", s): TrafficCounters(10, 0, 3.0) for s in ("blue", "green")}
    (check,) = metric_source_checks(config, counted, ["web"])
    assert check.ok is True and "error ratio and latency judged" in check.detail
    (check,) = metric_source_checks(config, FakeRouter(), ["web"])  # counts nothing
    assert check.ok is False and "blue: the load balancer does not count it" in check.detail
    (check,) = metric_source_checks(config, None, ["web"])  # the router did not open
    assert check.ok is None


def test_doctor_json_names_the_source(tmp_path: Path, prometheus: Any) -> None:
    config = with_steps(tmp_path, prometheus["url"])
    (tmp_path / "hosts.yml").write_text(  # unreachable hosts: their checks fail, not this
        "all:\n  children:\n    web_blue: {hosts: {b1: {ansible_host: 127.0.0.1, "
        "ansible_port: 1}}}\n    web_green: {hosts: {g1: {ansible_host: 127.0.0.2, "
        "ansible_port: 1}}}\n")
    out = CliRunner().invoke(main, ["-c", str(config.path), "doctor", "web", "--json"])
    checks = {c["name"]: c for c in json.loads(out.stdout)["checks"]}
    assert checks["metric source web"]["ok"] is True, checks
    assert prometheus["url"] in checks["metric source web"]["detail"]
    text = CliRunner().invoke(main, ["-c", str(config.path), "doctor", "web"])
    assert "metric source web" in text.stdout and prometheus["url"] in text.stdout
