"""`bluegreen serve` without a network: the ASGI app over a real SQLite store and the fake
router (read-only methods, token, security headers, pages, JSON API, /metrics, stale
store), the address and token rules, and `bluegreen metrics`. The same server runs on the
lab, in Chromium, in tests/integration/test_views.py."""

from __future__ import annotations

import base64
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families
from starlette.testclient import TestClient

from orchestrator.advisories import measured
from orchestrator.advisories.measured import SideMeasurement
from orchestrator.errors import BadInput, StateError
from orchestrator.routers.base import TrafficCounters
from orchestrator.state.models import AuditEntryInput
from orchestrator.state.sqlite import SQLiteStateStore
from orchestrator.testing import FakeRouter, FrozenClock
from orchestrator.web.app import SECURITY_HEADERS, create_app
from orchestrator.web.refresher import Snapshots
from orchestrator.web.server import parse_listen, resolve_token
from tests.support.evidence import MARKUP, write_campaign

TOKEN = "t0ken-that-is-long-enough"


class World:
    def __init__(self, tmp_path: Path) -> None:
        self.clock = FrozenClock(datetime(2026, 11, 7, 22, 0, tzinfo=UTC))
        self.db = tmp_path / "state.db"
        self.key = tmp_path / "audit.key"
        self.router = FakeRouter(memory={"web": "blue", "api": "blue"})
        self.router.counted[("web", "blue")] = TrafficCounters(120, 3)
        self.writer = SQLiteStateStore(self.db, clock=self.clock, audit_key_file=self.key)
        self.broken = False
        self.exposure = tmp_path / "advisories" / "exposure.json"
        self.snapshots = Snapshots(self._open, ["api", "web"], clock=self.clock,
                                   exposure_file=self.exposure)

    def _open(self) -> tuple[SQLiteStateStore, FakeRouter]:
        if self.broken:
            raise StateError("state database is locked", hint="retry")
        return SQLiteStateStore(self.db, audit_key_file=self.key), self.router

    def record(self, command: str, service: str, before: str, after: str) -> None:
        self.writer.audit_append(AuditEntryInput(
            actor="alice", command=command, service=service, reason="test",
            before={"live": before}, after={"live": after}))

    def client(self, token: str | None = None) -> TestClient:
        assert self.snapshots.refresh()
        return TestClient(create_app(self.snapshots, token=token, clock=self.clock),
                          base_url="http://localhost")


@pytest.fixture
def world(tmp_path: Path) -> Iterator[World]:
    w = World(tmp_path)
    yield w
    w.snapshots.stop()
    w.writer.close()


def metrics(client: TestClient) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    response = client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain; version=0.0.4")
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(response.text)
        for s in family.samples
    }


def test_pages_api_and_headers(world: World) -> None:
    write_campaign(world.writer, world.clock, hostile=True)
    client = world.client()
    for path in ("/", "/audit", "/api/v1/services", "/api/v1/runs", "/api/v1/campaigns",
                 "/api/v1/audit", "/metrics", "/static/live.js"):
        response = client.get(path)
        assert response.status_code == 200, path
        for name, value in SECURITY_HEADERS.items():
            assert response.headers[name] == value, (path, name)
    csp = SECURITY_HEADERS["content-security-policy"]
    assert "unsafe-inline" not in csp and "frame-ancestors 'none'" in csp
    page = client.get("/").text
    assert "<script src=\"/static/live.js\" defer></script>" in page
    assert page.count("<script") == 1  # no inline script
    assert MARKUP not in page and MARKUP not in client.get("/audit").text  # escaped
    services = client.get("/api/v1/services").json()
    assert services["api"] == "v1" and services["stale_since"] is None
    web = next(s for s in services["services"] if s["name"] == "web")
    assert web["live"] == "blue" and web["rollbacks"] == 1
    assert web["sides"][0]["traffic"] == {"responses": 120, "errors_5xx": 3}
    campaigns = client.get("/api/v1/campaigns").json()["campaigns"]
    assert campaigns[0]["name"] == "evidence" and campaigns[0]["status"] == "failed"
    assert campaigns[0]["window"]["open"] is True
    assert [w[0]["status"] for w in campaigns[0]["waves"]] == ["done", "failed"]
    runs = client.get("/api/v1/runs").json()["runs"]
    assert {r["run_id"] for r in runs} == {"c1", "r-web", "r-api"}
    # the bake's steps with every measurement: in the API and on the page, as text
    steps = next(r for r in runs if r["run_id"] == "r-web")["bake_steps"]
    assert [(s["number"], s["percent"], s["verdict"]) for s in steps] == [
        (1, 20, "pass"), (2, 50, "pass")]
    assert [j["verdict"] for j in steps[0]["measurements"]] == ["inconclusive", "pass"]
    bake = page[page.index('<details class="bake" data-run="r-web"'):].split("</details>")[0]
    assert bake.count('<tr class="measurement"') == 3
    assert "volume 12 below 20" in bake and "0.0021" in bake and "121 / 484" in bake
    assert 'backend=&#34;web_green&#34;' in bake  # the query as sent, escaped
    assert "<script>" not in bake and "&lt;script&gt;document.title=2" in bake
    audit = client.get("/api/v1/audit").json()["audit"]
    assert audit["ok"] and audit["head"] == f"{audit['count']}:{audit['head_hash']}"


@pytest.mark.parametrize("method", ["POST", "PUT", "PATCH", "DELETE", "OPTIONS"])
@pytest.mark.parametrize("path", ["/", "/api/v1/services", "/metrics", "/nope"])
def test_only_get_and_head(world: World, method: str, path: str) -> None:
    before = world.writer.audit_head()
    response = world.client().request(method, path)
    assert response.status_code == 405 and response.headers["allow"] == "GET, HEAD"
    assert response.headers["x-frame-options"] == "DENY"
    assert world.writer.audit_head() == before
    assert world.client().head("/").status_code == 200


def test_token_bearer_or_basic(world: World) -> None:
    client = world.client(token=TOKEN)
    assert client.get("/api/v1/services").status_code == 401
    assert "Basic" in client.get("/").headers["www-authenticate"]
    assert client.get("/", headers={"authorization": "Bearer nope"}).status_code == 401
    ok = client.get("/", headers={"authorization": f"Bearer {TOKEN}"})
    assert ok.status_code == 200
    basic = base64.b64encode(f"anyone:{TOKEN}".encode()).decode()
    assert client.get("/metrics", headers={"authorization": f"Basic {basic}"}).status_code == 200
    assert client.get("/", headers={"authorization": "Basic %%%"}).status_code == 401
    assert client.post("/", headers={"authorization": f"Bearer {TOKEN}"}).status_code == 405


def test_metrics_follow_flips_rollbacks_and_verifications(world: World) -> None:
    m = metrics(world.client())
    assert m[("bluegreen_live_side", (("service", "web"), ("side", "blue")))] == 1.0
    assert m[("bluegreen_live_side", (("service", "web"), ("side", "green")))] == 0.0
    assert ("bluegreen_seconds_since_last_flip", (("service", "web"),)) not in m  # never
    assert m[("bluegreen_rollbacks_total", (("service", "web"),))] == 0.0
    assert m[("bluegreen_audit_chain_ok", ())] == 1.0

    world.router.memory["web"] = "green"
    world.record("rollout.flip", "web", "blue", "green")
    world.clock.advance(30)
    m = metrics(world.client())
    assert m[("bluegreen_live_side", (("service", "web"), ("side", "green")))] == 1.0
    assert m[("bluegreen_seconds_since_last_flip", (("service", "web"),))] == 30.0

    world.router.memory["web"] = "blue"
    world.record("rollout.auto-rollback", "web", "green", "blue")
    world.writer.audit_append(AuditEntryInput(
        actor="alice", command="verify", service="web",
        after={"side": "green", "ok": False, "summary": "1 of 2 checks failed"}))
    world.clock.advance(5)
    m = metrics(world.client())
    assert m[("bluegreen_live_side", (("service", "web"), ("side", "blue")))] == 1.0
    assert m[("bluegreen_seconds_since_last_flip", (("service", "web"),))] == 5.0
    assert m[("bluegreen_rollbacks_total", (("service", "web"),))] == 1.0
    assert m[("bluegreen_automatic_rollbacks_total", (("service", "web"),))] == 1.0
    key = ("bluegreen_verification_failures_total", (("service", "web"), ("side", "green")))
    assert m[key] == 1.0
    assert m[("bluegreen_deviations_total", (("service", "web"),))] == 0.0
    world.writer.audit_append(AuditEntryInput(
        actor="watch", command="deviation", service="web", result="deviation",
        after={"side": "blue", "findings": {"web-blue-1": ["user eve added"]}}))
    assert metrics(world.client())[("bluegreen_deviations_total", (("service", "web"),))] == 1.0


def _service(client: TestClient, name: str) -> dict[str, Any]:
    doc = client.get("/api/v1/services").json()
    return dict(next(s for s in doc["services"] if s["name"] == name))


def test_exposure_the_newest_measurement_per_side_with_its_age(world: World) -> None:
    client = world.client()
    assert _service(client, "web")["exposure"] is None
    assert "not measured" in client.get("/").text
    assert "run `bluegreen exposure`" in client.get("/api/v1/services").json()["notes"][0]
    assert not any(name == "bluegreen_open_cves" for name, _ in metrics(client))

    at = world.clock.now
    measured.save(world.exposure, [
        SideMeasurement("web", "blue", at, 2, 2, 0, {"high": 48, "medium": 26}, 74, ["f"]),
        SideMeasurement("web", "green", at, 2, 0, 1, {}, 0, ["f"]),
    ])
    world.clock.advance(600)
    # green is patched after the measurement: its numbers are outdated, and say so
    world.writer.begin_patch("web", "green", "lvl-2", audit=AuditEntryInput(
        actor="alice", command="patch", service="web"))
    client = world.client()
    web = _service(client, "web")
    assert set(web["exposure"]) == {"blue", "green"}
    blue, green = web["sides"]
    assert blue["exposure"]["open"] == 74 and blue["exposure"]["outdated"] is False
    assert blue["exposure"]["by_urgency"] == {"high": 48, "medium": 26}
    assert green["exposure"]["open"] == 0 and green["exposure"]["outdated"] is True
    assert _service(client, "api")["exposure"] is None
    page = client.get("/").text
    assert 'data-side="blue" data-open="74"' in page and "74 open</span> 48 high, 26 medium" in page
    assert "measured 10.0 min ago" in page and "1 NOT READ" in page
    assert "outdated</span> patched after the measurement" in page

    m = metrics(client)
    def cves(side: str, urgency: str) -> float:
        return m[("bluegreen_open_cves", (("service", "web"), ("side", side),
                                          ("urgency", urgency)))]
    assert cves("blue", "high") == 48 and cves("blue", "medium") == 26
    assert cves("blue", "critical") == 0 and cves("green", "high") == 0
    web_green = (("service", "web"), ("side", "green"))
    assert m[("bluegreen_exposure_outdated", web_green)] == 1.0
    assert m[("bluegreen_exposure_unread_hosts", web_green)] == 1.0
    assert m[("bluegreen_exposed_hosts", (("service", "web"), ("side", "blue")))] == 2.0
    assert m[("bluegreen_exposure_measured_timestamp_seconds", web_green)] == at.timestamp()
    assert not any(dict(labels).get("service") == "api" for name, labels in m
                   if name == "bluegreen_open_cves")


def test_an_unreadable_exposure_record_is_said_not_shown(world: World) -> None:
    world.exposure.parent.mkdir()
    world.exposure.write_text('{"format": 1, "sides": [{"service": "web", "side": "blue", '
                              '"by_urgency": {"<b>high</b>": 1}}]}')
    client = world.client()
    doc = client.get("/api/v1/services").json()
    assert "open CVEs: not shown: exposure record" in doc["notes"][0]
    assert all(s["exposure"] is None for s in doc["services"])
    page = client.get("/").text
    assert "not a side measurement" in page and "<b>high" not in page
    assert not any(name == "bluegreen_open_cves" for name, _ in metrics(client))


def test_a_busy_store_shows_the_last_snapshot_as_stale(world: World) -> None:
    client = world.client()
    read_at = world.snapshots.current()[0].read_at  # type: ignore[union-attr]
    world.broken = True
    world.clock.advance(10)
    assert not world.snapshots.refresh()
    page = client.get("/").text
    assert "stale since 2026-11-07 22:00:00 UTC" in page and "locked" in page
    doc = client.get("/api/v1/services").json()
    assert doc["stale_since"] == read_at.isoformat() and "locked" in doc["problem"]
    assert metrics(client)[("bluegreen_snapshot_stale", ())] == 1.0
    world.broken = False
    assert world.snapshots.refresh()
    assert client.get("/api/v1/services").json()["stale_since"] is None


def test_listen_and_token_rules(tmp_path: Path) -> None:
    assert parse_listen("127.0.0.1:8088").loopback
    assert parse_listen("[::1]:9000").loopback and parse_listen("localhost:1").loopback
    for bad in ("8088", "127.0.0.1:0", "127.0.0.1:x", "example.net:80"):
        with pytest.raises(BadInput):
            parse_listen(bad)
    public = parse_listen("0.0.0.0:8088")
    assert not public.loopback
    with pytest.raises(BadInput, match="token is required"):
        resolve_token(public, None, {})
    assert resolve_token(parse_listen("127.0.0.1:8088"), None, {}) is None
    env = resolve_token(public, None, {"BLUEGREEN_SERVE_TOKEN": TOKEN})
    assert env is not None and env.value == TOKEN and "BLUEGREEN_SERVE_TOKEN" in env.source
    with pytest.raises(BadInput, match="shorter"):
        resolve_token(public, None, {"BLUEGREEN_SERVE_TOKEN": "short"})
    f = tmp_path / "token"
    f.write_text(TOKEN + "\n")
    f.chmod(0o644)
    with pytest.raises(BadInput, match="chmod 600"):
        resolve_token(public, str(f), {})
    f.chmod(0o600)
    from_file = resolve_token(public, str(f), {})
    assert from_file is not None and from_file.value == TOKEN
    with pytest.raises(BadInput, match="cannot be read"):
        resolve_token(public, str(tmp_path / "missing"), {})


def test_the_current_step_on_the_dashboard_the_api_and_metrics(world: World) -> None:
    from orchestrator.routers.base import Exposure

    def share(m: dict[tuple[str, tuple[tuple[str, str], ...]], float], side: str) -> float:
        return m[("bluegreen_traffic_percent", (("service", "web"), ("side", side)))]

    m = metrics(world.client())
    assert (share(m, "blue"), share(m, "green")) == (100.0, 0.0)
    assert _service(world.client(), "web")["step"] is None
    world.router.exposed["web"] = Exposure("green", 25)
    client = world.client()
    m = metrics(client)
    assert (share(m, "blue"), share(m, "green")) == (75.0, 25.0)
    assert m[("bluegreen_preview", (("service", "web"), ("side", "green")))] == 1.0
    assert _service(client, "web")["step"] == {"side": "green", "percent": 25,
                                               "preview": False}
    assert 'data-step-percent="25"' in client.get("/").text
    world.router.exposed["web"] = Exposure("green", 0)
    client = world.client()
    assert share(metrics(client), "green") == 0.0
    assert "preview &rarr; green" in client.get("/").text
