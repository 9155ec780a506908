"""Progressive exposure and preview on the lab (issue 23): real HAProxy, real hosts, real
traffic through the frontend on loopback, the real SQLite store and audit chain.

One scenario group, one setup: preview header requests always reach the standby while
nobody else does; at 25 % about a quarter of requests are served by it (the confirm
header); a HAProxy reload keeps the step; step changes under load fail no request; a
rollback from a step (the CLI, as in an incident) is instant, leaves no request on the
exposed side and marks it failed_live; the audit chain verifies."""

from __future__ import annotations

import threading
import time
import urllib.request
from collections import Counter
from typing import Any

import pytest

from orchestrator.config.loaded import load_config
from orchestrator.lab.lab import Lab
from orchestrator.lab.traffic import TrafficReport, send
from orchestrator.routers.base import PREVIEW_HEADER, exposing
from orchestrator.sides import Side, other_side
from orchestrator.state import AuditEntryInput
from orchestrator.testing import patched
from orchestrator.traffic import ExposeRequest, expose_traffic, open_router, open_store, settle
from tests.support.cli import bluegreen_json
from tests.support.lab import audit_ok, reset_state_dir

pytestmark = [pytest.mark.lab, pytest.mark.destructive]

WEB = "web"
HEADER = "X-Bluegreen-Backend"


def served(url: str, count: int, *, preview: bool) -> Counter[str]:
    """The backend of each of `count` sequential requests (with the preview header)."""
    seen: Counter[str] = Counter()
    for _ in range(count):
        request = urllib.request.Request(url, headers={PREVIEW_HEADER: "1"} if preview else {})
        with urllib.request.urlopen(request, timeout=5) as response:  # noqa: S310
            seen[str(response.headers.get(HEADER))] += 1
    return seen


def share(report: TrafficReport, backend: str) -> float:
    total = sum(sum(c.values()) for c in report.by_backend.values())
    return sum(report.by_backend.get(backend, Counter()).values()) / max(total, 1)


def no_errors(report: TrafficReport) -> None:
    doc = report.as_dict()
    assert report.failed == 0, doc
    bad = {b: c for b, c in doc["by_backend"].items() if set(c) - {"2xx"}}
    assert not bad, doc


def test_steps_preview_reload_and_rollback_under_load(lab: Lab) -> None:
    reset_state_dir(lab)
    config_path = lab.paths.config
    config = load_config(config_path)
    url = lab.status()["frontends"][WEB] + "/"
    store, router = open_store(config), open_router(config)
    try:
        assert exposing(router) is not None
        live: Side = settle(store, router, WEB, "test")
        standby = other_side(live)
        live_b, standby_b = f"{WEB}_{live}", f"{WEB}_{standby}"
        setup = AuditEntryInput(actor="test", command="setup", service=WEB)
        patched(store, WEB, standby, "demo-web=1.0.1", audit=setup)
        store.record_verification(WEB, standby, True, "demo-web=1.0.1", "lab test",
                                  audit=setup)

        def step(percent: int) -> Any:
            return expose_traffic(store, router, ExposeRequest(
                service=WEB, side=standby, percent=percent, command="rollout.step",
                reason=f"step {percent}", actor="test"))

        # 1. preview: only requests with the header reach the standby
        assert step(0).preview
        assert served(url, 30, preview=False) == {live_b: 30}
        assert served(url, 20, preview=True) == {standby_b: 20}

        # 2. 25 %: about a quarter of 400 requests (binomial: 15..35 % is 4.6 sigma each way)
        step(25)
        quarter = send(url, rps=200, seconds=2.0)
        no_errors(quarter)
        assert 0.15 <= share(quarter, standby_b) <= 0.35, quarter.as_dict()
        assert served(url, 10, preview=True) == {standby_b: 10}

        # 3. a reload of HAProxy keeps the step (maps persisted); status shows it
        lab.reload_haproxy()
        code, st = bluegreen_json(config_path, "status", WEB)
        assert code == 0 and st["exposure"] == {"side": standby, "percent": 25,
                                                "preview": False}, st
        assert st["state_exposure"] == st["exposure"]
        again = send(url, rps=200, seconds=2.0)
        no_errors(again)
        assert 0.15 <= share(again, standby_b) <= 0.35, again.as_dict()

        # 4. step changes under load, then a rollback from a step: nothing fails
        loaded: list[TrafficReport] = []
        sender = threading.Thread(target=lambda: loaded.append(send(url, rps=100, seconds=6)))
        sender.start()
        try:
            for percent in (50, 5, 0, 25):
                time.sleep(0.6)
                assert step(percent).changed
            time.sleep(0.6)
            started = time.monotonic()
            code, out = bluegreen_json(config_path, "rollback", WEB, "--reason", "INC-23")
            rollback_s = time.monotonic() - started
        finally:
            sender.join(timeout=60)
        assert not sender.is_alive() and loaded
        no_errors(loaded[0])
        assert loaded[0].sent >= 500, loaded[0].as_dict()
        assert code == 0 and out["changed"] and out["to"] == live, out
        assert rollback_s < 10, rollback_s  # a CLI process on a busy CI machine
        assert out["seconds"] < 2.0, out  # the kernel's own part (about 0.1 s when idle)

        # 5. after the rollback: no request on the exposed side, preview neither
        assert router.exposure(WEB) is None  # type: ignore[attr-defined]
        after = send(url, rps=200, seconds=1.0)
        no_errors(after)
        assert share(after, standby_b) == 0.0, after.as_dict()
        assert served(url, 10, preview=True) == {live_b: 10}
        code, st = bluegreen_json(config_path, "status", WEB)
        assert code == 0 and st["exposure"] is None and st["state_exposure"] is None, st
        assert st["sides"][standby]["state"] == "failed_live", st
        code, second = bluegreen_json(config_path, "rollback", WEB, "--reason", "INC-23 again")
        assert code == 0 and not second["changed"], second
        steps = [r for r in store.audit_records(WEB) if r.command == "rollout.step"]
        assert [r.after["percent"] for r in steps] == [0, 25, 50, 5, 0, 25]
        audit_ok(config_path)
    finally:
        ex = exposing(router)
        if ex is not None:  # whatever happened: no share of web's traffic left behind
            ex.expose(WEB, None, 0)
        router.close()
        store.close()
