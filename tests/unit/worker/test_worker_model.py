"""The workers' model (issue 24): workers of two sites claim a campaign's services from the
real PostgreSQL queue and run their children (real `worker.service.serve`, real Rollout
with FakePatcher/FakeGate behind one FakeRouter, the real store), interleaved with their
deaths: a worker killed -9 while its child patches (its queue and store sessions end, its
code stops), a worker whose queue session alone ends (its child runs on: it cannot record
the end), and meanwhile another worker claiming (a takeover, the site limit, a live holder
given back). Invariants after every step:

- never two children of one service at once (checked when a patch starts);
- exactly one completion: at most one `done` child run and one journal end per service,
  and at the end every service that is `done` in the queue has exactly one;
- the per-site limit (claims of live workers) and the failure budget hold across workers:
  no service is claimed for the first time once the campaign is stopped;
- traffic, store and audit agree: each service's live side at the router is the one the
  store records, and the audit chain verifies.

CI runs a few derandomized examples; `BLUEGREEN_MODEL_WORKER_EXAMPLES=N` (and
`BLUEGREEN_MODEL_STEPS=M`) explores with random seeds.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from orchestrator.campaign.model import campaign_from_dict
from orchestrator.campaign.runner import storable
from orchestrator.config.loaded import load_config
from orchestrator.state.queue import QueuedService, WorkQueue, open_work_queue
from orchestrator.state.sql.workqueue import Budget
from orchestrator.testing import (
    FakeGate,
    FakePatcher,
    FakeRouter,
    SimulatedCrash,
    fake_config,
    fake_fleet,
    fake_rollouts,
)
from orchestrator.traffic import open_store
from orchestrator.worker.service import Served, serve
from tests.support import postgres
from tests.support.model import model_settings

SITES = {"web": "default", "db": "default", "api": "dc2", "mail": "dc2"}
WAVES = [["web", "api", "mail"], ["db"]]
LIMIT = 1  # dc2's services in flight at once, over all its workers
BUDGET = 2  # failed services before the campaign starts nothing more
RUN = "campaign-model-1"
MEANWHILE = ("crash", "queue_lost", "queue_lost_other_claims", "other_works")
"""What happens while a child patches: its worker is killed -9; its worker's queue session
ends; that, and another worker of the site claims meanwhile; another worker works."""


@dataclass
class ModelWorker:
    site: str
    queue: WorkQueue
    alive: bool = True
    queue_lost: bool = False


class WorkerModel(RuleBasedStateMachine):
    state_url: str | None = None
    """Set by the module's fixture: a throwaway database, emptied per example."""

    def __init__(self) -> None:
        super().__init__()
        assert self.state_url is not None, "the PostgreSQL database fixture did not run"
        postgres.empty_tables(self.state_url)
        self.tmp = Path(tempfile.mkdtemp(prefix="bluegreen-worker-model-"))
        fake_config(self.tmp, tuple(SITES))
        doc = json.loads((self.tmp / "bluegreen.yml").read_text())
        doc["state"] = {"url": self.state_url}
        doc["audit"] = {"key_file": str(self.tmp / "audit.key")}
        doc["sites"] = {"dc2": {"max_parallel": LIMIT}}
        for name, site in SITES.items():
            doc["services"][name]["site"] = site
        (self.tmp / "bluegreen.yml").write_text(json.dumps(doc))
        self.config = load_config(self.tmp / "bluegreen.yml")
        self.router = FakeRouter(dict.fromkeys(SITES, "blue"))
        self.patcher = FakePatcher(during=self._during)
        self.gate = FakeGate()
        self.store = open_store(self.config)
        self.observer = open_work_queue(self.config.state, what="the model")
        self.workers: list[ModelWorker] = []
        self.patching: set[str] = set()
        self.meanwhile: tuple[str, ModelWorker] | None = None
        self.served: list[tuple[str, str, bool]] = []  # (service, state, taken over)
        self.happened: Counter[str] = Counter()  # what happened meanwhile, by kind
        self._start_campaign()
        for site in ("default", "dc2"):
            self.worker_starts(site)

    def _start_campaign(self) -> None:
        campaign = campaign_from_dict({
            "name": "model", "advisories": [{"id": "DEMO-1", "packages": {"demo-web": "1.0.1"}}],
            "waves": [{"services": w, "on_failure": "continue"} for w in WAVES],
            "workers": {"budget": {"max_failed_services": BUDGET}}})
        self.store.create_run(RUN, "campaign", None, {
            "name": "model", "file": str(self.tmp / "c.yml"), "config": str(self.config.path),
            "campaign": storable(campaign), "waves": WAVES, "workers": True}, "model",
            reason="campaign model")
        self.observer.enqueue(RUN, [[QueuedService(service=s, site=SITES[s], wave=wi, hosts=0,
                                                   stop_on_failure=False) for s in wave]
                                    for wi, wave in enumerate(WAVES)],
                              budget=Budget(BUDGET, None), site_limits={"dc2": LIMIT})

    def teardown(self) -> None:
        try:
            self._drain_and_check()
        finally:
            for w in self.workers:
                w.queue.close()
            self.observer.close()
            self.store.close()
            shutil.rmtree(self.tmp, ignore_errors=True)

    # -- the rules ---------------------------------------------------------------------

    @precondition(lambda self: sum(w.alive for w in self.workers) < 3)
    @rule(site=st.sampled_from(("default", "dc2", "dc2")))
    def worker_starts(self, site: str) -> None:
        queue = open_work_queue(self.config.state, what="the model")
        queue.register(site, 1)
        self.workers.append(ModelWorker(site, queue))

    @precondition(lambda self: any(w.alive for w in self.workers))
    @rule(pick=st.integers(0, 7), fail=st.booleans(),
          meanwhile=st.sampled_from((None, *MEANWHILE)))
    def worker_claims(self, pick: int, fail: bool, meanwhile: str | None) -> None:
        live = [w for w in self.workers if w.alive]
        worker = live[pick % len(live)]
        self.meanwhile = (meanwhile, worker) if meanwhile else None
        self._work(worker, fail)
        self.meanwhile = None

    # -- what a worker does (`worker.loop.Worker`: claim, serve, finish) ---------------

    def _work(self, worker: ModelWorker, fail: bool = False) -> Served | None:
        stopped = self._stopped()
        claim = worker.queue.claim()
        if claim is None:
            return None
        assert stopped is None, f"{claim.service} claimed after the campaign stopped: {stopped}"
        self._check_site_limit()
        side = "green" if self.router.memory[claim.service] == "blue" else "blue"
        if fail:
            self.patcher.fail.add((claim.service, side))
        try:
            out = serve(self.config.for_site(worker.site), fake_fleet(self.config), claim,
                        on_event=lambda _e: None, clock=_now,
                        rollouts=fake_rollouts(self.patcher, self.gate),
                        routers=lambda _view: self.router)
        except SimulatedCrash:  # killed -9: nothing more of this worker runs
            self._dies(worker)
            return None
        finally:
            self.patcher.fail.discard((claim.service, side))
        if worker.queue_lost:  # the child ended, the worker cannot record it: it exits
            self._dies(worker)
            return out
        self.served.append((claim.service, out.state, claim.takeover))
        if out.state == "queued":
            assert worker.queue.give_back(claim, out.outcome)
        else:
            assert worker.queue.finish(claim, out.state, out.outcome,
                                       failed_hosts=out.failed_hosts)
        return out

    def _during(self, service: str, _side: str) -> None:
        """FakePatcher calls this while a child "runs Ansible" on `service`."""
        assert service not in self.patching, f"two children of {service} patch at once"
        self.patching.add(service)
        try:
            what, self.meanwhile = self.meanwhile, None
            if what is None:
                return
            kind, worker = what
            self.happened[kind] += 1
            if kind == "crash":
                raise SimulatedCrash("worker killed -9 while its child patches")
            if kind.startswith("queue_lost"):
                postgres.terminate_session(self.config.state.url or "",
                                           postgres.backend_pid(worker.queue))
                worker.queue_lost = True
            if kind in ("queue_lost_other_claims", "other_works"):
                other = next((w for w in self.workers if w.alive and w is not worker
                              and w.site == worker.site), None)
                if other is None:
                    self.worker_starts(worker.site)
                    other = self.workers[-1]
                self._work(other)
        finally:
            self.patching.discard(service)

    def _dies(self, worker: ModelWorker) -> None:
        worker.alive = False
        worker.queue.close()  # its session (and with it its worker lock) ends

    def _stopped(self) -> str | None:
        return self.observer.stopped(RUN)

    # -- invariants --------------------------------------------------------------------

    def _check_site_limit(self) -> None:
        items = self.observer.items(RUN)
        live = Counter(i.site for i in items
                       if i.state == "claimed" and i.worker is not None and i.worker.alive)
        assert live["dc2"] <= LIMIT, f"dc2 has {live['dc2']} services claimed at once"

    @invariant()
    def exactly_one_completion_and_traffic_agrees(self) -> None:
        done = Counter(r.service for r in self.store.list_runs(status="done")
                       if r.kind == "rollout")
        assert all(n == 1 for n in done.values()), f"a service completed twice: {done}"
        ends = Counter(e.step for e in self.store.journal(RUN) if e.phase == "end")
        assert all(n == 1 for n in ends.values()), f"a step ended twice: {ends}"
        for name in SITES:
            row = self.store.get_service(name)
            recorded = row.live_side if row is not None and row.live_side else "blue"
            assert self.router.memory[name] == recorded, (name, recorded, self.router.memory)

    def _drain_and_check(self) -> None:
        """Fresh workers of both sites serve what is left; then every service the queue
        says is done completed exactly once, and the audit chain verifies."""
        fresh = []
        for site in ("default", "dc2"):
            self.worker_starts(site)
            fresh.append(self.workers[-1])
        for _ in range(3 * len(SITES)):
            if all(self._work(w) is None for w in fresh):
                break
        items = {i.service: i for i in self.observer.items(RUN)}
        stopped = self._stopped()
        failed = [n for n, i in items.items() if i.state == "failed"]
        if stopped is None:
            assert all(i.state in ("done", "failed") for i in items.values()), items
        # the budget stops new claims; a child in flight when it is spent (the one nested in
        # another's patch here) may still fail after it
        assert len(failed) <= BUDGET + 1, (failed, stopped)
        done = Counter(r.service for r in self.store.list_runs(status="done")
                       if r.kind == "rollout")
        for name, item in items.items():
            if item.state == "done":
                assert done[name] == 1, (name, done)
                assert self.router.memory[name] == "green", (name, self.router.memory)
        self.exactly_one_completion_and_traffic_agrees()
        report = self.store.verify_audit()
        assert report.ok, report.findings


def _now() -> Any:
    from datetime import UTC, datetime

    return datetime.now(UTC)


@pytest.fixture(scope="module", autouse=True)
def _postgres_for_the_model() -> Iterator[None]:
    with postgres.throwaway_database("bluegreen_worker_model") as url:
        WorkerModel.state_url = postgres.migrated(url)
        yield
        WorkerModel.state_url = None


TestWorkerModel = WorkerModel.TestCase
TestWorkerModel.settings = model_settings("BLUEGREEN_MODEL_WORKER_EXAMPLES", 3, 6)


# -- the moments that matter, as fixed examples of the same machine ----------------------

def _killed_while_patching(m: WorkerModel) -> None:
    m.worker_claims(pick=1, fail=False, meanwhile="crash")  # dc2's worker, on api
    assert m.happened["crash"] == 1 and not m.workers[1].alive
    m.worker_starts("dc2")
    m.worker_claims(pick=1, fail=False, meanwhile=None)  # the new worker of dc2
    assert m.served[-1] == ("api", "done", True)


def _queue_lost_while_another_claims(m: WorkerModel) -> None:
    m.worker_claims(pick=1, fail=False, meanwhile="queue_lost_other_claims")
    assert ("api", "queued", True) in m.served  # the live holder's service: given back
    m.worker_claims(pick=1, fail=False, meanwhile=None)
    assert m.served[-1] == ("api", "done", True)  # read from the journal: one completion


def _budget_across_workers(m: WorkerModel) -> None:
    m.worker_claims(pick=1, fail=True, meanwhile=None)  # dc2's first worker: api fails
    m.worker_starts("dc2")
    m.worker_claims(pick=2, fail=True, meanwhile=None)  # dc2's second worker: mail fails
    assert [(s, st) for s, st, _ in m.served] == [("api", "failed"), ("mail", "failed")]
    assert "failure budget spent: 2 failed services" in (m._stopped() or "")
    m.worker_claims(pick=0, fail=False, meanwhile=None)  # default's worker: nothing more
    assert len(m.served) == 2


SCENARIOS = {"killed_while_patching": _killed_while_patching,
             "queue_lost_while_another_claims": _queue_lost_while_another_claims,
             "budget_across_workers": _budget_across_workers}


@pytest.mark.parametrize("name", sorted(SCENARIOS))
def test_workers(name: str) -> None:
    machine = WorkerModel()
    try:
        SCENARIOS[name](machine)
        machine.exactly_one_completion_and_traffic_agrees()
    finally:
        machine.teardown()
