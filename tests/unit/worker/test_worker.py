"""Workers with fakes on the real PostgreSQL server (issue 24): `campaign run --workers`
hands the services to the workers of their sites and ends as a one-machine run does; a
site without a live worker defers or fails the run after its deadline; the failure
budget stops new services. Child rollouts are `fake_rollouts` (FakePatcher, FakeGate)
behind one FakeRouter; the store, the queue and the claims are real."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from orchestrator.campaign.events import CampaignResult
from orchestrator.campaign.model import campaign_from_dict
from orchestrator.campaign.queued import QueueScheduler
from orchestrator.campaign.runner import CampaignRunner
from orchestrator.cli import main
from orchestrator.config.loaded import load_config
from orchestrator.errors import BadInput
from orchestrator.state.queue import open_work_queue
from orchestrator.testing import (
    FakeGate,
    FakePatcher,
    FakeRouter,
    fake_config,
    fake_fleet,
    fake_rollouts,
)
from orchestrator.traffic import open_store
from orchestrator.worker.loop import Worker, WorkerEvent
from tests.support import postgres
from tests.support.haproxy_fixture import wait_until
from tests.support.pipes import read_line

SERVICES = ("web", "api", "db", "mail")
SITES = {"web": "default", "db": "default", "api": "dc2", "mail": "dc2"}


@pytest.fixture(scope="module")
def database() -> Iterator[str]:
    with postgres.throwaway_database() as fresh:
        yield postgres.migrated(fresh)


@pytest.fixture
def config(database: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Any:
    postgres.empty_tables(database)
    monkeypatch.setattr(QueueScheduler, "poll_s", 0.05)
    fake_config(tmp_path, SERVICES)
    doc = json.loads((tmp_path / "bluegreen.yml").read_text())
    doc["state"] = {"url": database}
    doc["audit"] = {"key_file": str(tmp_path / "audit.key")}
    doc["sites"] = {"dc2": {"max_parallel": 1}}
    for name, site in SITES.items():
        doc["services"][name]["site"] = site
    (tmp_path / "bluegreen.yml").write_text(json.dumps(doc))
    return load_config(tmp_path / "bluegreen.yml")


def campaign(*, on_failure: str = "stop", **workers: Any) -> Any:
    return campaign_from_dict({
        "name": "c1",
        "advisories": [{"id": "DEMO-1", "packages": {"demo-web": "1.0.1"}}],
        "waves": [{"services": ["web", "api"], "on_failure": on_failure},
                  {"services": ["db", "mail"], "on_failure": on_failure}],
        "workers": workers,
    })


class Fleetwide:
    """Workers in threads, each its own queue connection; stopped and joined on exit."""

    def __init__(self, config: Any, patcher: FakePatcher, router: FakeRouter) -> None:
        self.config, self.patcher, self.router = config, patcher, router
        self.stop = threading.Event()
        self.events: list[tuple[str, WorkerEvent]] = []
        self.threads: list[threading.Thread] = []

    def start(self, site: str, max_parallel: int = 1) -> None:
        worker = Worker(self.config, site, max_parallel=max_parallel, stop=self.stop,
                        poll_s=0.05, on_event=lambda ev: self.events.append((site, ev)),
                        rollouts=fake_rollouts(self.patcher, FakeGate()),
                        routers=lambda _view: self.router, fleet=fake_fleet(self.config))
        thread = threading.Thread(target=worker.run, name=f"worker-{site}")
        self.threads.append(thread)
        thread.start()

    def close(self) -> None:
        self.stop.set()
        for thread in self.threads:
            thread.join(60)
            assert not thread.is_alive()


@pytest.fixture
def fleet(config: Any) -> Iterator[Fleetwide]:
    wide = Fleetwide(config, FakePatcher(fail=set()), FakeRouter({s: "blue" for s in SERVICES}))
    try:
        yield wide
    finally:
        wide.close()


def run(config: Any, fleet: Fleetwide, camp: Any, tmp_path: Path) -> CampaignResult:
    file = tmp_path / "c1.yml"
    file.write_text("# the campaign\n")
    store = open_store(config)
    try:
        runner = CampaignRunner(config, store, fleet.router, actor="ci",
                                fleet=fake_fleet(config), workers=True,
                                rollouts=fake_rollouts(fleet.patcher, FakeGate()))
        result = runner.run(camp, str(file))
    finally:
        store.close()
    assert isinstance(result, CampaignResult)
    return result


def test_each_site_runs_its_own_services_wave_by_wave(config: Any, fleet: Fleetwide,
                                                      tmp_path: Path) -> None:
    fleet.start("default")
    fleet.start("dc2")
    fleet.start("dc2")  # two workers of one site: its limit (1) still holds
    result = run(config, fleet, campaign(), tmp_path)
    assert (result.status, result.exit_code) == ("done", 0), result.message
    assert {n: s.status for n, s in result.services.items()} == dict.fromkeys(SERVICES, "done")
    calls = fleet.patcher.calls
    assert sorted(calls) == sorted((s, "green") for s in SERVICES)
    assert {s for s, _ in calls[:2]} == {"web", "api"}  # wave 1 ended before wave 2
    assert sorted(fleet.router.flips) == sorted((s, "green") for s in SERVICES)
    with open_work_queue(config.state) as work:
        items = {i.service: i for i in work.items(result.run_id)}
    for name, site in SITES.items():  # each service ran by a worker of its own site
        worker = items[name].worker
        assert worker is not None and worker.site == site and items[name].state == "done"
    claimed = [(site, ev.data["service"]) for site, ev in fleet.events if ev.kind == "claimed"]
    assert sorted(claimed) == sorted((SITES[s], s) for s in SERVICES)
    out = CliRunner().invoke(main, ["-c", str(config.path), "campaign", "status", "c1",
                                    "--json"])
    assert out.exit_code == 0, out.output
    doc = json.loads(out.output)
    assert doc["status"] == "done" and doc["sites"] == {
        "default": {"live_workers": 1, "waiting": 0}, "dc2": {"live_workers": 2, "waiting": 0}}
    for name, site in SITES.items():
        assert doc["services"][name]["status"] == "done"
        assert doc["services"][name]["worker"] == {
            "site": site, "host": os.uname().nodename, "pid": os.getpid(), "alive": True}


@pytest.mark.parametrize(("policy", "status", "code"), [("fail", "failed", 1),
                                                        ("defer", "deferred", 6)])
def test_a_site_without_a_live_worker_ends_the_run_as_configured(
        config: Any, fleet: Fleetwide, tmp_path: Path, policy: str, status: str,
        code: int) -> None:
    fleet.start("default")  # nobody serves dc2
    result = run(config, fleet, campaign(no_worker_deadline="1s", on_no_worker=policy),
                 tmp_path)
    assert (result.status, result.exit_code) == (status, code)
    assert "no live worker of site dc2" in result.message
    assert ("api", "green") not in fleet.patcher.calls
    assert all(s != "db" for s, _ in fleet.patcher.calls)  # wave 2 never started


def test_the_failure_budget_stops_new_services(config: Any, fleet: Fleetwide,
                                               tmp_path: Path) -> None:
    fleet.patcher.fail.update({("web", "green"), ("api", "green"), ("db", "green")})
    fleet.start("default")
    fleet.start("dc2")
    result = run(config, fleet, campaign(on_failure="continue",
                                         budget={"max_failed_services": 2}), tmp_path)
    assert result.status == "failed" and result.exit_code != 0
    assert "failure budget spent: 2 failed services" in result.message
    assert sorted(fleet.patcher.calls) == [("api", "green"), ("web", "green")]
    assert result.services["db"].status != "done"


def test_sqlite_refuses_workers_before_anything_changes(tmp_path: Path) -> None:
    config = fake_config(tmp_path, ("web",))
    with pytest.raises(BadInput) as info:
        CampaignRunner(config, None, None, actor="ci", workers=True)  # type: ignore[arg-type]
    assert "--workers needs the shared PostgreSQL store" in str(info.value)
    assert not (tmp_path / "state").exists()


def test_campaign_run_workers_on_sqlite_is_exit_2_and_writes_nothing(tmp_path: Path) -> None:
    config = fake_config(tmp_path, ("web",))
    camp = tmp_path / "c1.yml"
    camp.write_text(json.dumps({"name": "c1", "advisories": [
        {"id": "DEMO-1", "packages": {"demo-web": "1.0.1"}}], "waves": [{"services": ["web"]}]}))
    out = CliRunner().invoke(main, ["-c", str(config.path), "campaign", "run", str(camp),
                                    "--yes", "--workers"])
    assert out.exit_code == 2, out.output
    assert "--workers needs the shared PostgreSQL store" in out.output
    assert not (tmp_path / "state").exists()


def test_the_worker_command_serves_until_sigterm(config: Any, tmp_path: Path) -> None:
    groups = {f"{name}_{side}": {"hosts": {f"{name}-{side}-1": {
        "ansible_host": f"127.0.{i}.{j + 1}"}}}
        for i, name in enumerate(SERVICES) for j, side in enumerate(("blue", "green"))}
    (tmp_path / "hosts.yml").write_text(json.dumps({"all": {"children": groups}}))
    proc = subprocess.Popen(
        [sys.executable, "-m", "orchestrator", "-c", str(config.path), "worker", "--site",
         "dc2", "--max-parallel", "2", "--json"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        line = read_line(proc.stdout, 60, "the worker's first event")
        if not line.startswith('{"event"'):
            proc.kill()
            out, err = proc.communicate(timeout=30)
            pytest.fail(f"no started event: {line}{out}\n{err}")
        started = json.loads(line)
        assert started["event"] == "started" and started["site"] == "dc2"
        assert (started["pid"], started["max_parallel"], started["alive"]) == (proc.pid, 2, True)
        with open_work_queue(config.state) as work:
            assert [(w.pid, w.alive) for w in work.workers("dc2")] == [(proc.pid, True)]
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=60)
        assert proc.returncode == 0, err
        assert json.loads(out.splitlines()[-1])["event"] == "stopped"
        with open_work_queue(config.state) as work:
            gone = work.workers("dc2")
        assert len(gone) == 1 and not gone[0].alive and gone[0].stopped_at is not None
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(30)


def test_a_site_without_services_is_refused(config: Any) -> None:
    with pytest.raises(BadInput, match="site 'dc9' has no services"):
        Worker(config, "dc9")


def test_a_worker_that_loses_its_queue_finishes_what_it_runs_and_nobody_fails_it(
        config: Any, fleet: Fleetwide, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """review5 N6: worker A's queue session ends while its child patches `api` (its run
    lock on a session of its own). A claims nothing more, its child runs to its end, then
    A raises; worker B sees A dead and takes `api` over, but its child meets A's live
    child holding the run lock: B gives the service back (not failed, no budget spent)
    until A's child ended, then records it done. One patch of api, the campaign done."""
    queues: list[Any] = []

    def recorded_queue(*args: Any, **kwargs: Any) -> Any:
        queue = open_work_queue(*args, **kwargs)
        if threading.current_thread().name == "worker-a":
            queues.append(queue)
        return queue

    monkeypatch.setattr("orchestrator.worker.loop.open_work_queue", recorded_queue)
    patching, release = threading.Event(), threading.Event()

    def during(service: str, _side: str) -> None:
        if service == "api" and not patching.is_set():
            patching.set()
            assert release.wait(60), "the test never released the patch"

    fleet.patcher.during = during
    fleet.start("default")
    a_events: list[WorkerEvent] = []
    a_failed: list[BaseException] = []
    a = Worker(config, "dc2", stop=fleet.stop, poll_s=0.05, heartbeat_s=0.05,
               on_event=a_events.append, rollouts=fake_rollouts(fleet.patcher, FakeGate()),
               routers=lambda _view: fleet.router, fleet=fake_fleet(config))

    def run_a() -> None:
        try:
            a.run()
        except BaseException as exc:  # noqa: BLE001 - asserted below
            a_failed.append(exc)

    a_thread = threading.Thread(target=run_a, name="worker-a")
    a_thread.start()

    def meanwhile() -> None:
        assert patching.wait(60), "worker A never patched api"
        postgres.terminate_session(config.state.url, postgres.backend_pid(queues[0]))
        fleet.start("dc2")  # worker B
        wait_until(lambda: any(ev.kind == "finished" and ev.data.get("state") == "queued"
                               for _site, ev in list(fleet.events)), 60, "B gave api back")
        assert a_thread.is_alive()  # A waits for its child, claims nothing
        release.set()

    helper = threading.Thread(target=meanwhile, name="meanwhile")
    helper.start()
    try:
        result = run(config, fleet, campaign(on_failure="continue",
                                             budget={"max_failed_services": 1}), tmp_path)
    finally:
        release.set()
        helper.join(60)
        a_thread.join(60)
    assert not helper.is_alive() and not a_thread.is_alive()
    assert (result.status, result.exit_code) == ("done", 0), result.message
    assert fleet.patcher.calls.count(("api", "green")) == 1
    assert len(a_failed) == 1, a_failed  # A ends with the queue's error: exit non-zero
    assert [ev.kind for ev in a_events].count("claimed") == 1  # nothing after the loss
    assert any(ev.kind == "stopping" and "work queue failed" in ev.message for ev in a_events)
    with open_work_queue(config.state) as work:
        items = {i.service: i for i in work.items(result.run_id)}
    assert items["api"].state == "done" and items["api"].claims >= 2
    assert items["api"].worker is not None and items["api"].worker.alive  # B recorded it
