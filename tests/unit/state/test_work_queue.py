"""The work queue of workers on the real PostgreSQL server (issue 24): claims by site and
wave, `SKIP LOCKED` claims of many workers at once under the per-site limit, a worker's
death (kill -9 of its process) and the takeover, and the fleet-wide failure budget."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from orchestrator.errors import BadInput
from orchestrator.state.queue import Budget, Claim, QueuedService, WorkQueue, open_work_queue
from orchestrator.state.registry import open_store, parse_state_url, sqlite_location
from tests.support import postgres
from tests.support.pipes import read_line

NO_BUDGET = Budget()


@pytest.fixture(scope="module")
def database() -> Iterator[str]:
    with postgres.throwaway_database() as fresh:
        yield postgres.migrated(fresh)


@pytest.fixture
def url(database: str) -> str:
    postgres.empty_tables(database)
    return database


def queue(url: str) -> WorkQueue:
    return open_work_queue(parse_state_url(url))


def campaign(url: str, key: Path, run_id: str, waves: list[list[QueuedService]], *,
             budget: Budget = NO_BUDGET, limits: dict[str, int] | None = None) -> None:
    """A running campaign run (as `campaign run --workers` makes it) with its services."""
    with open_store(parse_state_url(url), audit_key_file=key) as store:
        store.create_run(run_id, "campaign", None, {"name": run_id}, "alice")
    with queue(url) as q:
        assert q.enqueue(run_id, waves, budget=budget, site_limits=limits or {}) == sum(
            len(w) for w in waves)


def svc(name: str, site: str = "dc1", hosts: int = 2, stop: bool = False) -> QueuedService:
    return QueuedService(service=name, site=site, wave=0, hosts=hosts, stop_on_failure=stop)


def worker(url: str, site: str, max_parallel: int = 1) -> WorkQueue:
    q = queue(url)
    q.register(site, max_parallel)
    return q


def test_sqlite_refuses_workers(tmp_path: Path) -> None:
    with pytest.raises(BadInput) as info:
        open_work_queue(sqlite_location(tmp_path / "state.db"))
    assert "--workers needs the shared PostgreSQL store" in str(info.value)
    assert "state.url: postgresql://" in (info.value.hint or "")
    assert info.value.exit_code == 2


def test_claims_follow_site_and_waves_and_name_their_worker(url: str, tmp_path: Path) -> None:
    campaign(url, tmp_path / "k", "c1", [[svc("web"), svc("api", "dc2")], [svc("db")]])
    a, b = worker(url, "dc1"), worker(url, "dc2")
    try:
        web = a.claim()
        assert web is not None and (web.service, web.wave, web.takeover) == ("web", 0, False)
        assert a.claim() is None  # db is in wave 2: wave 1 has not ended (api runs)
        api = b.claim()
        assert api is not None and api.service == "api"
        assert a.finish(web, "done", "flipped to green")
        assert a.claim() is None  # api still in flight
        assert b.finish(api, "done", "flipped")
        db = a.claim()
        assert db is not None and (db.service, db.wave) == ("db", 1)
        items = {i.service: i for i in a.items("c1")}
        assert items["web"].state == "done" and items["db"].state == "claimed"
        named = items["api"].as_dict()["worker"]
        assert named == {"site": "dc2", "host": os.uname().nodename, "pid": os.getpid(),
                         "alive": True}
        assert not b.finish(db, "done", "not b's")  # only its claimer finishes it
    finally:
        a.close()
        b.close()


def test_many_workers_at_once_keep_the_site_limit(url: str, tmp_path: Path) -> None:
    names = [f"s{i}" for i in range(8)]
    campaign(url, tmp_path / "k", "c1", [[svc(n) for n in names]], limits={"dc1": 3})
    workers = [worker(url, "dc1") for _ in range(6)]
    claimed: list[tuple[int, str]] = []
    start = threading.Barrier(len(workers))
    lock = threading.Lock()
    errors: list[BaseException] = []

    def poll(i: int) -> None:
        try:
            start.wait(60)
            for _ in range(3):
                got = workers[i].claim()
                if got is not None:
                    with lock:
                        claimed.append((i, got.service))
        except BaseException as exc:  # noqa: BLE001 - reported by the test below
            with lock:
                errors.append(exc)
    try:
        threads = [threading.Thread(target=poll, args=(i,)) for i in range(len(workers))]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        assert not any(t.is_alive() for t in threads), "a claim took more than 60 s"
        assert errors == []  # a claim that raised (e.g. a lock timeout) is the failure
        assert len(claimed) == 3 and len({s for _, s in claimed}) == 3  # the limit, no twins
        done = 0
        while claimed:  # finishing frees a place: the rest go out, each once
            i, name = claimed.pop()
            item = next(c for c in workers[i].items("c1") if c.service == name)
            assert item.worker is not None and item.state == "claimed"
            assert workers[i].finish(Claim("c1", name, "dc1", 0, 1), "done", "ok")
            done += 1
            for w in workers:
                got = w.claim()
                if got is not None:
                    claimed.append((workers.index(w), got.service))
                    break
        assert done == 8
        assert all(i.state == "done" and i.claims == 1 for i in workers[0].items("c1"))
    finally:
        for w in workers:
            w.close()


def test_a_killed_workers_service_is_taken_over(url: str, tmp_path: Path) -> None:
    campaign(url, tmp_path / "k", "c1", [[svc("web")]])
    code = (
        "import time\nfrom orchestrator.state.queue import open_work_queue\n"
        "from orchestrator.state.registry import parse_state_url\n"
        f"q = open_work_queue(parse_state_url({url!r}))\n"
        "q.register('dc1', 1)\nprint(q.claim().service, flush=True)\ntime.sleep(120)\n"
    )
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    b = worker(url, "dc1")
    try:
        assert proc.stdout is not None
        assert read_line(proc.stdout, 60, "the worker's claim").strip() == "web"
        assert b.claim() is None  # the live holder keeps it
        before = b.items("c1")[0]
        assert before.worker is not None and before.worker.alive
        assert before.worker.pid == proc.pid
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(30)
        got = None
        deadline = time.monotonic() + 30  # the server notices the closed socket at once,
        while got is None and time.monotonic() < deadline:  # a loaded machine takes longer
            got = b.claim()
            if got is None:
                time.sleep(0.1)
        assert got is not None and got.service == "web" and got.takeover and got.claims == 2
        dead = [w for w in b.workers("dc1") if w.pid == proc.pid]
        assert len(dead) == 1 and not dead[0].alive
        assert b.finish(got, "done", "resumed")
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(30)
        b.close()


def test_the_failure_budget_counts_across_workers(url: str, tmp_path: Path) -> None:
    campaign(url, tmp_path / "k", "c1",
             [[svc("a1"), svc("b1", "dc2"), svc("a2"), svc("b2", "dc2"), svc("a3")]],
             budget=Budget(max_failed_services=2))
    a, b = worker(url, "dc1"), worker(url, "dc2")
    try:
        ca, cb = a.claim(), b.claim()
        assert ca is not None and cb is not None
        assert a.finish(ca, "failed", "verify failed", failed_hosts=2)
        assert a.stopped("c1") is None  # one failure of two
        cb2 = a.claim()  # a2 still starts
        assert cb2 is not None and cb2.service == "a2"
        assert b.finish(cb, "failed", "unreachable", failed_hosts=1)
        assert a.stopped("c1") == ("failure budget spent: 2 failed services "
                                   "(max_failed_services: 2)")
        assert a.claim() is None and b.claim() is None  # not 2 per worker: 2 in all
        assert a.finish(cb2, "done", "in flight: it ends")
    finally:
        a.close()
        b.close()


def test_hosts_budget_on_failure_stop_and_deferral_stop_new_claims(url: str,
                                                                    tmp_path: Path) -> None:
    campaign(url, tmp_path / "k", "h", [[svc("a", hosts=3), svc("b", hosts=7)]],
             budget=Budget(max_failed_hosts_percent=30))
    campaign(url, tmp_path / "k", "s", [[svc("c", stop=True), svc("d")]])
    campaign(url, tmp_path / "k", "d", [[svc("e"), svc("f")]])
    w = worker(url, "dc1", 3)
    try:
        for run, state, hosts, why in (
            ("h", "failed", 3, "failure budget spent: 3 of 10 hosts failed "
                               "(max_failed_hosts_percent: 30)"),
            ("s", "failed", 0, "c failed (on_failure: stop)"),
            ("d", "deferred", 0, "deferred: the window closed before the flip"),
        ):
            got = w.claim()
            assert got is not None and got.campaign_run == run
            assert w.finish(got, state, "the window closed before the flip",
                            failed_hosts=hosts)
            assert w.stopped(run) == why
        assert w.claim() is None
        # `campaign resume`: the deferred service is queued again, the deferral lifted;
        # a spent budget and on_failure stop stay
        for run, left in (("d", 2), ("h", 1), ("s", 1)):
            assert w.enqueue(run, [], budget=NO_BUDGET, site_limits={}) == left
        assert (w.stopped("d"), w.stopped("h")) == (None, "failure budget spent: 3 of 10 "
                                                    "hosts failed (max_failed_hosts_percent: 30)")
        again = w.claim()
        assert again is not None and (again.campaign_run, again.service) == ("d", "e")
    finally:
        w.close()


def test_an_ended_campaign_run_hands_out_nothing(url: str, tmp_path: Path) -> None:
    campaign(url, tmp_path / "k", "c1", [[svc("web")]])
    with open_store(parse_state_url(url), audit_key_file=tmp_path / "k") as store:
        store.finish_run("c1", "aborted", "campaign abort")
    w = worker(url, "dc1")
    try:
        assert w.claim() is None
    finally:
        w.close()
