"""Two sites on the lab (issue 24): `bluegreen lab up --sites 2 --state postgresql` (its own
lab instance: web in site1, api in site2, one host per side), one worker per site started
INSIDE its site's network namespace (the site's orchestrator machine, with a hostname of its
own), the real CLI, Ansible, HAProxy (one per site) and PostgreSQL (reached through its unix
socket from both namespaces).

1. `lab status --json` names each site's services and namespace; a site's host answers from
   its own site's namespace only (not from the other site's; the root namespace has no
   route to the lab's subnet at all).
2. A campaign with no worker for its sites reports them and fails after its short
   `no_worker_deadline` (`on_no_worker: fail`, exit 1), nothing patched.
3. With one worker per site, a `--workers` campaign of both services completes; each service
   was patched and flipped by the worker of its own site (`campaign status`' worker, the
   audit's lock records name that worker's host and pid); both frontends serve green.
4. The failure budget counts across workers: a campaign whose first wave fails web (site1's
   worker) and api (site2's worker), `on_failure: continue`, budget 2 failed services,
   stops before its second wave: db (site1) never starts. Counted per worker (one failure
   each) it would have started.
"""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest
import yaml

from orchestrator.lab import sites
from orchestrator.lab.lab import Lab
from orchestrator.lab.paths import MAX_INSTANCES, LabPaths
from orchestrator.state.queue import open_work_queue
from orchestrator.state.registry import open_store, parse_state_url
from tests.reliability.helpers import stop, wait_for
from tests.support.cli import BLUEGREEN, bluegreen, bluegreen_json
from tests.support.lab import ROOT, served_by

pytestmark = [pytest.mark.lab, pytest.mark.destructive]

SITE_OF = {"web": "site1", "api": "site2"}  # and db, site1: the budget's second wave


@pytest.fixture(scope="module")
def sites_lab() -> Iterator[tuple[Lab, dict[str, str]]]:
    """A lab of two sites on an instance of its own (BLUEGREEN_LAB_SITES_INSTANCE, default
    the session lab's + 5, as the nginx lab; the two never run at once), made and taken
    down by the real CLI: (lab, env of its CLI)."""
    base = LabPaths.default()
    raw = os.environ.get("BLUEGREEN_LAB_SITES_INSTANCE")
    instance = int(raw) if raw else (base.instance + 5) % MAX_INSTANCES
    suffix = "" if instance == 0 else str(instance)
    paths = replace(base, instance=instance, root=base.root.with_name(f"bluegreen-lab{suffix}"))
    env = {"BLUEGREEN_LAB_INSTANCE": str(instance), "BLUEGREEN_LAB_DIR": str(paths.root)}
    full = {**os.environ, **env}
    up = subprocess.run([*BLUEGREEN, "lab", "up", "--services", "web,api,db", "--hosts-per-side",
                         "1", "--sites", "2", "--state", "postgresql"],
                        capture_output=True, text=True, env=full, timeout=600, check=False)
    try:
        if up.returncode != 0:
            pytest.fail(f"the sites lab could not start: {up.stdout}{up.stderr}",
                        pytrace=False)
        yield Lab(paths), env
    finally:
        down = subprocess.run([*BLUEGREEN, "lab", "down", "--json"], capture_output=True,
                              text=True, env=full, timeout=300, check=False)
        assert down.returncode == 0 and not json.loads(down.stdout)["leftovers"], down


def site_worker(config: Path, netns: str, site: str, env: dict[str, str]) -> \
        subprocess.Popen[str]:
    """`bluegreen worker --site SITE` on the site's machine: in its network namespace, with
    a hostname of its own (a UTS namespace), the same process all along (exec)."""
    return subprocess.Popen(
        ["ip", "netns", "exec", netns, "unshare", "--uts", "--", "sh", "-c",
         'hostname "$0" && exec "$@"', f"{site}-machine",
         *BLUEGREEN, "-c", str(config), "worker", "--site", site, "--json"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env={**os.environ, **env})


def campaign_file(tmp_path: Path, name: str, deadline: str) -> Path:
    doc = yaml.safe_load((ROOT / "inventories" / "lab" / "campaigns" / "lab-demo.yml")
                         .read_text())
    doc["name"] = name
    doc["waves"] = [{"name": "both sites", "services": ["web", "api"], "max_parallel": 2,
                     "on_failure": "stop"}]
    doc["workers"] = {"no_worker_deadline": deadline, "on_no_worker": "fail"}
    path = tmp_path / f"{name}.yml"
    path.write_text(yaml.safe_dump(doc))
    return path


def budget_file(tmp_path: Path) -> Path:
    """web and api (one per site) patched to a version no repository has, so both fail;
    then db; the waves go on after a failure: only the budget (2 services) stops it."""
    doc = yaml.safe_load(campaign_file(tmp_path, "budget", "60s").read_text())
    doc["advisories"][0]["packages"] = {"demo-web": "9.9.9-1"}
    doc["waves"] = [{"name": "one per site", "services": ["web", "api"], "max_parallel": 2,
                     "on_failure": "continue"},
                    {"name": "then", "services": ["db"], "on_failure": "continue"}]
    doc["workers"]["budget"] = {"max_failed_services": 2}
    path = tmp_path / "budget.yml"
    path.write_text(yaml.safe_dump(doc))
    return path


def quick_config(lab: Lab, tmp_path: Path) -> Path:
    """The lab's config with a short bake and drain (what this test checks is where each
    service ran, not the bake)."""
    doc = yaml.safe_load(lab.paths.config.read_text())
    for service in doc["services"].values():
        service["bake"]["seconds"] = 2
    for router in (doc["router"], *(s["router"] for s in doc["sites"].values()
                                    if "router" in s)):
        router["drain_seconds"] = 1
    path = tmp_path / "bluegreen.yml"
    path.write_text(yaml.safe_dump(doc))
    return path


def lock_holders(url: str, key: Path) -> dict[str, set[tuple[str | None, int]]]:
    """Per service, (hostname, pid) of the audit's lock records: who ran it."""
    store = open_store(parse_state_url(url), audit_key_file=key)
    try:
        out: dict[str, set[tuple[str | None, int]]] = {}
        for r in store.audit_records():
            if r.command == "lock.acquire" and r.service is not None:
                out.setdefault(r.service, set()).add((r.hostname, int(r.after["pid"])))
        return out
    finally:
        store.close()


def test_two_sites_each_service_is_patched_by_a_worker_of_its_own_site(
        sites_lab: tuple[Lab, dict[str, str]], tmp_path: Path) -> None:
    lab, env = sites_lab
    code, status = bluegreen_json(lab.paths.config, "lab", "status", env=env)
    assert code == 0, status
    by_site = {s["name"]: s for s in status["sites"]}
    assert {n: sorted(s["services"]) for n, s in by_site.items()} == {
        "site1": ["db", "web"], "site2": ["api"]}
    assert not status["problems"], status["problems"]
    netns = {n: s["netns"] for n, s in by_site.items()}
    address = {h["service"]: h["address"] for h in status["hosts"] if h["side"] == "blue"}
    # 1. a site's hosts answer from its namespace only
    assert sites.reachable(netns["site1"], address["web"], 8080)
    assert not sites.reachable(netns["site2"], address["web"], 8080)
    assert sites.reachable(netns["site2"], address["api"], 8080)
    assert not sites.reachable(netns["site1"], address["api"], 8080)
    # ... and the root namespace (this machine) has no bridge nor route to the lab's subnet
    routes = json.loads(subprocess.run(["ip", "-j", "route", "show"], capture_output=True,
                                       text=True, check=True).stdout or "[]")
    assert f"{lab.paths.subnet_prefix}.0/24" not in {r.get("dst") for r in routes}, routes
    assert not Path(f"/sys/class/net/{lab.paths.bridge}").exists()

    config = quick_config(lab, tmp_path)
    # 2. no worker anywhere: reported, and the run fails at its deadline; nothing patched
    idle = bluegreen(config, "campaign", "run", str(campaign_file(tmp_path, "nobody", "1s")),
                     "--yes", "--workers", env=env, timeout=120)
    assert idle.returncode == 1, (idle.stdout, idle.stderr)
    said = idle.stdout + idle.stderr
    assert "site site1 has no live worker" in said and "no live worker of site" in said, said
    assert {s: served_by(lab, s) for s in SITE_OF} == {"web": "blue", "api": "blue"}

    # 3. one worker per site, in its site's namespace
    workers = {site: site_worker(config, netns[site], site, env) for site in netns}
    try:
        url = yaml.safe_load(config.read_text())["state"]["url"]
        with open_work_queue(parse_state_url(url)) as work:
            wait_for(lambda: all(any(w.alive for w in work.workers(site)) for site in netns)
                     or any(p.poll() is not None for p in workers.values()), 120,
                     "a live worker in each site")
        assert all(p.poll() is None for p in workers.values())
        run = bluegreen(config, "campaign", "run", str(campaign_file(tmp_path, "sites", "60s")),
                        "--yes", "--workers", "--json", env=env, timeout=600)
        assert run.returncode == 0, (run.stdout, run.stderr)
        assert json.loads(run.stdout)["status"] == "done"
        code, st = bluegreen_json(config, "campaign", "status", "sites", env=env)
        assert code == 0, st
        for service, site in SITE_OF.items():
            worker = st["services"][service]["worker"]
            assert (worker["site"], worker["host"], worker["pid"]) == (
                site, f"{site}-machine", workers[site].pid), st
            assert served_by(lab, service) == "green"
        holders = lock_holders(url, lab.paths.audit_key)  # also the campaigns' (this machine)
        assert {s: holders.get(s) for s in SITE_OF} == {
            service: {(f"{site}-machine", workers[site].pid)}
            for service, site in SITE_OF.items()}, holders
        # 4. the budget: two failures, one per worker, stop the campaign before db starts
        over = bluegreen(config, "campaign", "run", str(budget_file(tmp_path)), "--yes",
                         "--workers", "--json", env=env, timeout=600)
        assert over.returncode == 1, (over.stdout, over.stderr)
        code, st = bluegreen_json(config, "campaign", "status", "budget", env=env)
        assert code == 0, st
        failed = {s: (v["status"], (v.get("worker") or {}).get("site"))
                  for s, v in st["services"].items()}
        assert failed["web"] == ("failed", "site1") and failed["api"] == ("failed", "site2"), st
        assert failed["db"][0] != "failed" and st["services"]["db"].get("worker") is None, st
        assert served_by(lab, "db") == "blue" and all(p.poll() is None for p in workers.values())
        code, verified = bluegreen_json(config, "audit", "verify", env=env)
        assert code == 0 and verified["ok"], verified
        for proc in workers.values():
            proc.terminate()
        for proc in workers.values():
            out, err = proc.communicate(timeout=120)
            assert proc.returncode == 0, err
            assert json.loads(out.splitlines()[-1])["event"] == "stopped", out
    finally:
        for proc in workers.values():
            stop(proc)
