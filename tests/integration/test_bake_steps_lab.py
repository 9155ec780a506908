"""Issue 23's acceptance on the lab: the bake as steps (the lab's own bluegreen.yml: web
at 20 % then 50 % then the flip), judged on the lab's real Prometheus against the twin,
under user-like traffic through the real HAProxy frontend (`lab traffic`), through the
real CLI. demo-web 1.1.2 (3 % 500s) and 1.1.3 (+300 ms) are rolled back at the first step
naming the metric and both values, with few users ever on the patched side; 1.0.1 goes
through every step to 100 %; no traffic and a Prometheus that stops mid-bake never pass."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import yaml

from orchestrator.lab.lab import Lab
from orchestrator.lab.traffic import TrafficReport, background
from tests.support.cli import bluegreen_json
from tests.support.haproxy_fixture import wait_until
from tests.support.prometheus_fixture import running_prometheus

FIXED = "demo-openssl=3.0.15-1"
RPS = 50.0


@contextmanager
def traffic(lab: Lab, seconds: float = 120.0) -> Iterator[TrafficReport]:
    """User-like requests through web's frontend while the block runs (bounded)."""
    with background(lab.status()["frontends"]["web"] + "/", RPS, seconds) as report:
        yield report


def rollout(config: Path, version: str) -> tuple[int, Any, float, float]:
    began = time.time()
    code, doc = bluegreen_json(config, "rollout", "web", "--yes", "--package", FIXED,
                               "--package", f"demo-web={version}", timeout=300)
    return code, doc, began, time.time()


def patched_share(report: TrafficReport, backend: str, ended: float) -> float:
    """Of the user requests from the first one `backend` served until the run ended, the
    share `backend` served."""
    firsts = [t for t, b, _ in report.log if b == backend]
    assert firsts, f"{backend} served no user request"
    window = [b for t, b, _ in report.log if min(firsts) <= t <= ended]
    return window.count(backend) / len(window)


def live(config: Path) -> str:
    code, doc = bluegreen_json(config, "status", "web")
    assert code == 0, doc
    return str(doc["live"])


def test_the_bake_as_steps_judges_like_an_sre(fresh_lab: Lab, tmp_path: Path) -> None:
    lab, config = fresh_lab, fresh_lab.paths.config  # the lab's default: web baked as steps
    green_hosts = ["web-green-1", "web-green-2"]  # downgrades are refused: fresh roots
    # 1. +300 ms on every request, no errors: rolled back naming latency
    with traffic(lab):
        code, doc, _, _ = rollout(config, "1.1.3")
    assert code == 4, doc
    assert "latency_seconds" in doc["error"] and live(config) == "blue", doc
    lab.reset(green_hosts)
    # 2. no user traffic: 1.1.2 is never promoted (inconclusive -> on_inconclusive: rollback)
    code, doc, _, _ = rollout(config, "1.1.2")
    assert code == 4, doc
    assert "inconclusive" in doc["error"] and "too little volume" in doc["error"], doc
    assert live(config) == "blue"
    lab.reset(green_hosts)
    # 3. 3 % of 500s: caught at the first step (20 %), rolled back, few users exposed
    with traffic(lab) as users:
        code, doc, _, ended = rollout(config, "1.1.2")
    assert code == 4, doc
    assert "step 1 (20% to green) fail" in doc["error"] and "error_ratio" in doc["error"]
    assert "vs twin 0" in doc["error"], doc["error"]
    assert live(config) == "blue"
    share = patched_share(users, "web_green", ended)
    assert share <= 0.25, share  # a flip at once gives about all of them
    lab.reset(green_hosts)
    # 4. a healthy patch goes through every step, then every user request is on it
    with traffic(lab) as users:
        code, doc, _, ended = rollout(config, "1.0.1")
        assert code == 0, doc
        steps = doc["steps"]["canary"]["steps"]
        assert [(s["percent"], s["verdict"]) for s in steps] == [(20, "pass"), (50, "pass")]
        assert live(config) == "green"
        after = time.time() + 0.5
        time.sleep(2)
    late = [b for t, b, _ in users.log if t > after]
    assert late and set(late) == {"web_green"}, set(late)
    # 5. the Prometheus the analysis reads stops mid-bake (blue, the standby now, gets
    # 1.0.1): inconclusive, never a pass; green stays live
    steps_doc = yaml.safe_load(config.read_text())
    with running_prometheus(tmp_path, [f"127.0.0.1:{lab.paths.haproxy_metrics_port}"]) as prom:
        prom.wait_for('up{job="haproxy"} == 1')
        steps_doc["services"]["web"]["bake"]["analysis"]["source"] = prom.url
        own = tmp_path / "bluegreen.yml"
        own.write_text(json.dumps(steps_doc))
        own.chmod(0o644)
        result: dict[str, Any] = {}
        with traffic(lab):
            runner = threading.Thread(target=lambda: result.update(
                zip(("code", "doc", "began", "ended"), rollout(own, "1.0.1"), strict=True)))
            runner.start()
            wait_until(lambda: (bluegreen_json(own, "status", "web")[1] or {})
                       .get("exposure") is not None, 120, "the first step's exposure")
            prom.stop()
            runner.join(timeout=300)
    assert result["code"] == 4, result
    assert "inconclusive" in result["doc"]["error"] and "cannot be reached" in \
        result["doc"]["error"], result["doc"]
    assert live(config) == "green"
