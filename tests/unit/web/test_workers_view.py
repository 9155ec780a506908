"""Workers on the dashboard, the JSON API and `/metrics` (issue 24), on the real PostgreSQL
server: live workers per site with what each claimed, the queue per site and state, a site
a campaign waits on with no live worker; a SQLite store shows none and fails nothing."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families
from starlette.testclient import TestClient

from orchestrator.state.base import StateStore
from orchestrator.state.queue import Budget, QueuedService, WorkQueue, open_work_queue
from orchestrator.state.registry import open_store, parse_state_url, sqlite_location
from orchestrator.testing import FakeRouter
from orchestrator.web.app import create_app
from orchestrator.web.refresher import Snapshots
from orchestrator.web.workers import reader
from tests.support import postgres

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


@pytest.fixture(scope="module")
def database() -> Iterator[str]:
    with postgres.throwaway_database() as fresh:
        yield postgres.migrated(fresh)


def metrics(client: TestClient) -> Samples:
    response = client.get("/metrics")
    assert response.status_code == 200
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(response.text)
            for s in family.samples}


def views(url: str, key: Path) -> tuple[Snapshots, TestClient]:
    location = parse_state_url(url)
    router = FakeRouter(memory={"web": "blue"})

    def sources() -> tuple[StateStore, FakeRouter]:
        return open_store(location, audit_key_file=key), router

    snapshots = Snapshots(sources, ["web"], workers=reader(location))
    return snapshots, TestClient(create_app(snapshots), base_url="http://localhost")


def refreshed(snapshots: Snapshots, client: TestClient) -> TestClient:
    assert snapshots.refresh(), snapshots.problem
    return client


def svc(name: str, site: str) -> QueuedService:
    return QueuedService(service=name, site=site, wave=0, hosts=2, stop_on_failure=False)


def test_live_workers_per_site_their_claims_and_a_site_nobody_serves(
        database: str, tmp_path: Path) -> None:
    postgres.empty_tables(database)
    key = tmp_path / "audit.key"
    with open_store(parse_state_url(database), audit_key_file=key) as store:
        store.create_run("c1", "campaign", None, {"name": "c1", "workers": True}, "alice")
    workers: list[WorkQueue] = []
    with open_work_queue(parse_state_url(database)) as q:
        q.enqueue("c1", [[svc("web", "dc1"), svc("api", "dc1"), svc("db", "dc2")]],
                  budget=Budget(), site_limits={})
    snapshots, client = views(database, key)
    try:
        a = open_work_queue(parse_state_url(database))
        workers.append(a)
        a.register("dc1", 2)
        claim = a.claim()
        assert claim is not None and claim.service == "web"
        idle = open_work_queue(parse_state_url(database))
        workers.append(idle)
        idle.register("dc3", 1)  # a site with a worker and nothing queued
        assert a.worker is not None and idle.worker is not None

        refreshed(snapshots, client)
        body = client.get("/api/v1/workers").json()["workers"]
        sites = {s["site"]: s for s in body}
        assert sorted(sites) == ["dc1", "dc2", "dc3"]
        [live] = sites["dc1"]["workers"]
        assert (live["pid"], live["host"], live["claimed"], live["max_parallel"]) == (
            a.worker.pid, a.worker.hostname, ["web"], 2)
        assert 0 <= live["heartbeat_age_s"] < 120
        assert sites["dc1"]["queue"] == {"queued": 1, "claimed": 1, "done": 0, "failed": 0,
                                         "deferred": 0}
        assert not sites["dc1"]["unserved"] and sites["dc1"]["waiting"] == 1
        assert sites["dc2"]["workers"] == [] and sites["dc2"]["unserved"]
        assert sites["dc3"]["workers"][0]["claimed"] == [] and not sites["dc3"]["unserved"]
        m = metrics(client)
        assert m[("bluegreen_workers_live", (("site", "dc1"),))] == 1
        assert m[("bluegreen_workers_live", (("site", "dc2"),))] == 0
        assert m[("bluegreen_work_queue", (("site", "dc1"), ("state", "claimed")))] == 1
        assert m[("bluegreen_work_queue", (("site", "dc2"), ("state", "queued")))] == 1
        assert m[("bluegreen_site_unserved", (("site", "dc2"),))] == 1
        assert m[("bluegreen_site_unserved", (("site", "dc1"),))] == 0
        page = client.get("/").text
        assert 'id="workers"' in page and f'data-pid="{a.worker.pid}"' in page
        assert "bluegreen worker --site dc2" in page and "bluegreen worker --site dc1" not in page

        a.close()  # its session ends: the worker is dead, its claim waits for another
        workers.remove(a)
        refreshed(snapshots, client)
        sites = {s["site"]: s for s in client.get("/api/v1/workers").json()["workers"]}
        assert sites["dc1"]["workers"] == [] and sites["dc1"]["unserved"]
        assert sites["dc1"]["waiting"] == 2
        m = metrics(client)
        assert m[("bluegreen_workers_live", (("site", "dc1"),))] == 0
        assert m[("bluegreen_site_unserved", (("site", "dc1"),))] == 1

        with open_store(parse_state_url(database), audit_key_file=key) as store:
            store.finish_run("c1", "failed", "stopped by hand")
        refreshed(snapshots, client)  # an ended campaign waits on nobody
        sites = {s["site"]: s for s in client.get("/api/v1/workers").json()["workers"]}
        assert sorted(sites) == ["dc3"]
        assert metrics(client)[("bluegreen_work_queue", (("site", "dc3"), ("state", "queued")))
                               ] == 0
    finally:
        for w in workers:
            w.close()
        snapshots.stop()


def test_a_sqlite_store_has_no_workers_and_no_error(tmp_path: Path) -> None:
    location = sqlite_location(tmp_path / "state.db")
    key = tmp_path / "audit.key"
    open_store(location, audit_key_file=key).close()
    assert reader(location) is None
    router = FakeRouter(memory={"web": "blue"})

    def sources() -> tuple[StateStore, FakeRouter]:
        return open_store(location, audit_key_file=key), router

    snapshots = Snapshots(sources, ["web"], workers=reader(location))
    client = TestClient(create_app(snapshots), base_url="http://localhost")
    try:
        refreshed(snapshots, client)
        response = client.get("/api/v1/workers")
        assert response.status_code == 200 and response.json()["workers"] is None
        assert not any(name.startswith(("bluegreen_workers", "bluegreen_work_queue",
                                        "bluegreen_site_unserved"))
                       for name, _ in metrics(client))
        page = client.get("/")
        assert page.status_code == 200 and 'id="workers"' not in page.text
    finally:
        snapshots.stop()
