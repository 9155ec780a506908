"""Workers on the lab (issue 24): `campaign run --workers` hands web to the workers of its
site through the real PostgreSQL store; two worker processes, the real CLI, real Ansible
and HAProxy. The worker patching web is killed -9 mid-patch (in the pause after the
patch's tasks): its playbook ends with it (the leash, patching/leash.py), the other
worker takes web over and resumes the same child run (a new fencing epoch), which alone
completes; traffic, store and audit agree."""

from __future__ import annotations

import json
import os
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from orchestrator.lab.lab import Lab
from orchestrator.processes import alive
from orchestrator.state.audit_key import load_key
from orchestrator.state.queue import open_work_queue
from orchestrator.state.registry import open_store, parse_state_url
from tests.reliability.helpers import fresh_web, start_cli, stop, wait_for
from tests.support import postgres
from tests.support.cli import bluegreen_json
from tests.support.lab import ROOT, no_steps_config, served_by, slow_patch_config

pytestmark = [pytest.mark.lab, pytest.mark.destructive]

WEB = "web"


@pytest.fixture
def team_store(lab: Lab, tmp_path: Path) -> Iterator[tuple[Path, dict[str, str], str]]:
    """The lab's config on one shared PostgreSQL store (migrated): (config, env, url)."""
    fresh_web(lab)
    home = tmp_path / "machine"
    home.mkdir(mode=0o700)
    load_key(home / "audit.key", create=True)
    (home / "cache").mkdir(mode=0o700)
    env = {"BLUEGREEN_CACHE_DIR": str(home / "cache")}
    with postgres.throwaway_database("bluegreen_workers") as url:
        doc = yaml.safe_load(no_steps_config(lab).read_text())
        doc["state"] = {"url": url}
        doc["audit"]["key_file"] = str(home / "audit.key")
        doc["reports_dir"] = str(home / "reports")
        config = home / "bluegreen.yml"
        config.write_text(yaml.safe_dump(doc))
        code, out = bluegreen_json(config, "state", "migrate", env=env)
        assert code == 0, out
        yield config, env, url


def parents() -> dict[int, int]:
    """pid -> parent pid of every process (from /proc)."""
    found = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            found[int(entry.name)] = int(fields[1])
    return found


def descendants(pid: int) -> tuple[list[int], list[int]]:
    """(children, all descendants) of `pid`."""
    tree = parents()
    children = [p for p, parent in tree.items() if parent == pid]
    out, todo = [], list(children)
    while todo:
        p = todo.pop()
        out.append(p)
        todo.extend(c for c, parent in tree.items() if parent == p)
    return children, out


def test_a_worker_killed_mid_patch_is_taken_over_by_another_worker_of_its_site(
        lab: Lab, team_store: tuple[Path, dict[str, str], str], tmp_path: Path) -> None:
    config, env, url = team_store
    key = config.parent / "audit.key"
    campaign = yaml.safe_load((ROOT / "inventories" / "lab" / "campaigns" / "lab-demo.yml")
                              .read_text())
    campaign["waves"] = [{"name": "web", "services": [WEB], "on_failure": "stop"}]
    file = tmp_path / "workers-demo.yml"
    file.write_text(yaml.safe_dump(campaign))
    slow = slow_patch_config(config, tmp_path, seconds=40)
    first = start_cli(slow, "worker", "--site", "default", "--json", env=env)
    run = start_cli(config, "campaign", "run", str(file), "--yes", "--workers", "--json",
                    env=env)
    second: subprocess.Popen[str] | None = None
    playbooks: list[int] = []
    leftovers: list[int] = []
    try:
        with open_work_queue(parse_state_url(url)) as work:
            def claimed_by(pid: int) -> bool:
                runs = [r for r in store_runs(url, key) if r["kind"] == "campaign"]
                items = work.items(runs[0]["run_id"]) if runs else []
                return any(i.worker is not None and i.worker.pid == pid
                           and i.state == "claimed" for i in items)

            wait_for(lambda: claimed_by(first.pid) or run.poll() is not None
                     or first.poll() is not None, 180, "web claimed by the first worker")
            assert run.poll() is None and first.poll() is None, (run.communicate(),
                                                                  first.communicate())
            wait_for(lambda: ("patch", "begin") in child_steps(url, key), 180,
                     "the child's patch step")
            second = start_cli(config, "worker", "--site", "default", "--json", env=env)
            wait_for(lambda: sum(w.alive for w in work.workers("default")) == 2
                     or second.poll() is not None, 120, "the second worker")
            assert ("patch", "end") not in child_steps(url, key)  # still patching
            playbooks, leftovers = descendants(first.pid)
            assert playbooks, "the first worker runs its playbook"
            stop(first)  # kill -9, mid-patch
            wait_for(lambda: not any(alive(p) for p in leftovers), 60,
                     "the killed worker's playbook to end with it")
            out, err = run.communicate(timeout=900)
            assert run.returncode == 0, (out, err)
            result = json.loads(out)
            assert result["status"] == "done", result
            items = work.items(result["run_id"])
        assert [(i.service, i.state, i.claims) for i in items] == [(WEB, "done", 2)]
        assert items[0].worker is not None and items[0].worker.pid == second.pid
        rollouts = [r for r in store_runs(url, key) if r["kind"] == "rollout"]
        assert [(r["service"], r["status"]) for r in rollouts] == [(WEB, "done")]  # one child
        assert rollouts[0]["epoch"] == 2  # resumed under a new epoch
        assert served_by(lab, WEB) == "green"
        code, st = bluegreen_json(config, "campaign", "status", "lab-demo", env=env)
        assert code == 0 and st["services"][WEB]["worker"]["pid"] == second.pid, st
        code, hist = bluegreen_json(config, "history", WEB, "--limit", "10000", env=env)
        assert code == 0 and "lock.takeover" in [r["command"] for r in hist], hist
        code, verified = bluegreen_json(config, "audit", "verify", env=env)
        assert code == 0 and verified["ok"], verified
        second.terminate()
        out, err = second.communicate(timeout=120)
        assert second.returncode == 0, err
        assert json.loads(out.splitlines()[-1])["event"] == "stopped", out
    finally:
        for proc in (first, run, second):
            if proc is not None:
                stop(proc)
        for pid in leftovers:  # Ansible's own forks of the killed playbook: by their pids
            if alive(pid):
                os.kill(pid, signal.SIGKILL)


def store_runs(url: str, key: Path) -> list[dict[str, object]]:
    store = open_store(parse_state_url(url), audit_key_file=key)
    try:
        return [{"run_id": r.run_id, "kind": r.kind, "service": r.service,
                 "status": r.status, "epoch": r.epoch} for r in store.list_runs()]
    finally:
        store.close()


def child_steps(url: str, key: Path) -> set[tuple[str, str]]:
    """(step, phase) of web's child rollout's journal."""
    store = open_store(parse_state_url(url), audit_key_file=key)
    try:
        runs = [r for r in store.list_runs(WEB) if r.kind == "rollout"]
        return {(e.step, e.phase) for e in store.journal(runs[-1].run_id)} if runs else set()
    finally:
        store.close()
