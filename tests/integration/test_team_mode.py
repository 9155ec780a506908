"""Team mode on the lab: two "machines" (two configs, two config-snapshot caches, two copies
of the audit key) share one PostgreSQL store, through the real CLI, real HAProxy, real
Ansible and the real PostgreSQL server."""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from orchestrator.lab.lab import Lab
from orchestrator.state.audit_key import load_key
from tests.reliability.helpers import fresh_web, start_cli, stop, wait_for
from tests.support import postgres
from tests.support.cli import bluegreen_json
from tests.support.lab import (
    ROOT,
    fingerprints,
    hosts_of,
    no_playbook_left,
    playbooks_running,
    quick_bake,
    router_live,
    served_by,
    slow_patch_config,
)

pytestmark = [pytest.mark.lab, pytest.mark.destructive]

WEB = "web"


def machine(lab: Lab, root: Path, name: str, url: str, key: Path) -> tuple[Path, dict[str, str]]:
    """A machine of the team: its bluegreen.yml (the lab's, with the shared store), its own
    copy of the audit key, its own snapshot cache; a quick bake (team mode is not about the
    bake). Returns (config, env)."""
    home = root / name
    home.mkdir(mode=0o700)
    doc = quick_bake(yaml.safe_load(lab.paths.config.read_text()))
    doc["state"] = {"url": url}
    doc["audit"]["key_file"] = str(home / "audit.key")
    doc["reports_dir"] = str(home / "reports")
    shutil.copy(key, home / "audit.key")
    (home / "audit.key").chmod(0o600)
    config = home / "bluegreen.yml"
    config.write_text(yaml.safe_dump(doc))
    cache = home / "cache"
    cache.mkdir(mode=0o700)
    return config, {"BLUEGREEN_CACHE_DIR": str(cache)}


@pytest.fixture
def team(lab: Lab, tmp_path: Path) -> Iterator[list[tuple[Path, dict[str, str]]]]:
    fresh_web(lab)
    key = tmp_path / "team.key"
    load_key(key, create=True)
    with postgres.throwaway_database("bluegreen_team") as url:
        first = machine(lab, tmp_path, "a", url, key)
        code, doc = bluegreen_json(first[0], "state", "migrate", env=first[1])
        assert code == 0 and doc["schema_before"] == 0, doc
        yield [first, machine(lab, tmp_path, "b", url, key)]


def test_rollout_on_one_machine_two_rollbacks_from_two_give_one_flip(
        lab: Lab, team: list[tuple[Path, dict[str, str]]]) -> None:
    (a, env_a), (b, env_b) = team
    code, doc = bluegreen_json(a, "rollout", WEB, "--yes", env=env_a, timeout=900)
    assert code == 0 and doc["to"] == "green", doc
    code, st = bluegreen_json(b, "status", WEB, env=env_b)  # the other machine sees it
    assert code == 0 and st["agrees"] and st["live"] == "green", st
    assert st["state_live"] == "green" and st["rollback_to"] == "blue", st
    procs = [start_cli(config, "rollback", WEB, "--reason", f"INC-7 from {name}", "--json",
                       env=env)
             for name, (config, env) in zip("ab", team, strict=True)]
    outs = []
    for proc in procs:
        out, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err
        outs.append(json.loads(out))
    assert sorted(o["changed"] for o in outs) == [False, True], outs
    assert served_by(lab, WEB) == "blue" and router_live(lab, WEB) == "web_blue"
    for config, env in team:
        code, st = bluegreen_json(config, "status", WEB, env=env)
        assert code == 0 and st["agrees"] and st["live"] == "blue", st
        assert st["sides"]["green"]["state"] == "failed_live", st
        code, verified = bluegreen_json(config, "audit", "verify", env=env)
        assert code == 0 and verified["ok"], verified
    code, hist = bluegreen_json(a, "history", WEB, "--limit", "10000", env=env_a)
    assert code == 0
    commands = [(r["command"], r["result"]) for r in hist]
    assert commands.count(("rollback", "ok")) == 1, commands
    assert {r["hostname"] for r in hist} and any("INC-7" in (r["reason"] or "") for r in hist)


def running_steps(url: str, key: Path) -> set[tuple[str, str]]:
    """(step, phase) of the running rollout's journal, read through the store's own API."""
    from orchestrator.state.registry import open_store, parse_state_url

    store = open_store(parse_state_url(url), audit_key_file=key)
    try:
        runs = store.list_runs(status="running")
        return {(e.step, e.phase) for e in store.journal(runs[-1].run_id)} if runs else set()
    finally:
        store.close()


def side_state(url: str, key: Path, service: str, side: str) -> str | None:
    """The side's state in the shared store, read through the store's own API."""
    from orchestrator.state.registry import open_store, parse_state_url

    store = open_store(parse_state_url(url), audit_key_file=key)
    try:
        found = store.get_side(service, side)  # type: ignore[arg-type]
        return found.state if found is not None else None
    finally:
        store.close()


def test_a_rollout_killed_on_one_machine_is_resumed_on_the_other(
        lab: Lab, team: list[tuple[Path, dict[str, str]]], tmp_path: Path) -> None:
    (a, env_a), (b, env_b) = team
    url = yaml.safe_load(a.read_text())["state"]["url"]
    slow = slow_patch_config(a, tmp_path, seconds=30)
    proc = start_cli(slow, "rollout", WEB, "--yes", "--json", env=env_a)
    try:
        wait_for(lambda: ("patch", "begin") in running_steps(url, a.parent / "audit.key")
                 or proc.poll() is not None, 120, "the patch step on machine a")
        assert proc.poll() is None, proc.communicate()
        code, doc = bluegreen_json(b, "rollout", WEB, "--yes", env=env_b)
        assert code == 5, doc  # the run lock is held by machine a's live session
        assert str(proc.pid) in doc["error"], doc
        wait_for(lambda: bool(playbooks_running(str(slow.parent / "slow-patch.yml"))), 60,
                 "machine a's ansible-playbook")
    finally:
        stop(proc)  # kill -9: its session ends, and the lock with it
    no_playbook_left(str(slow.parent / "slow-patch.yml"))  # its playbook died with it
    code, st = bluegreen_json(b, "status", WEB, env=env_b)
    assert code == 0 and st["lock"] is None, st  # a dead holder's lock is no lock
    code, doc = bluegreen_json(b, "resume", env=env_b, timeout=900)
    assert code == 0 and doc["to"] == "green", doc
    assert served_by(lab, WEB) == "green"
    code, hist = bluegreen_json(b, "history", WEB, "--limit", "10000", env=env_b)
    assert code == 0 and "lock.takeover" in [r["command"] for r in hist], hist
    code, verified = bluegreen_json(a, "audit", "verify", env=env_a)
    assert code == 0 and verified["ok"], verified


def test_a_rollback_on_one_machine_aborts_the_rollout_patching_on_the_other(
        lab: Lab, team: list[tuple[Path, dict[str, str]]], tmp_path: Path) -> None:
    (a, env_a), (b, env_b) = team
    url = yaml.safe_load(a.read_text())["state"]["url"]
    code, doc = bluegreen_json(a, "rollout", WEB, "--yes", env=env_a, timeout=900)
    assert code == 0 and doc["to"] == "green", doc
    green = hosts_of(lab, WEB, "green")
    before = fingerprints(lab, green)
    slow = slow_patch_config(a, tmp_path, seconds=30)
    proc = start_cli(slow, "rollout", WEB, "--yes", "--json", env=env_a)  # patches blue
    try:
        wait_for(lambda: ("patch", "begin") in running_steps(url, a.parent / "audit.key")
                 or proc.poll() is not None, 120, "the patch step on machine a")
        assert proc.poll() is None, proc.communicate()
        code, out = bluegreen_json(b, "rollback", WEB, "--reason", "INC-8 from b", env=env_b)
        assert code == 0 and not out["changed"] and out["aborted_run"], out
        assert "had not flipped yet" in out["message"], out
        out_text, _ = proc.communicate(timeout=300)
        assert proc.returncode == 1 and "aborted" in json.loads(out_text)["error"], out_text
    finally:
        stop(proc)
    assert served_by(lab, WEB) == "green" and fingerprints(lab, green) == before
    for config, env in team:
        code, st = bluegreen_json(config, "status", WEB, env=env)
        assert code == 0 and st["agrees"] and st["live"] == "green", st
        assert st["sides"]["blue"]["state"] == "patching" and st["lock"] is None, st
        code, verified = bluegreen_json(config, "audit", "verify", env=env)
        assert code == 0 and verified["ok"], verified
    code, doc = bluegreen_json(b, "flip", WEB, "--to", "blue", "--reason", "try", env=env_b)
    assert code == 3 and "patching" in doc["error"], doc


def test_two_timers_firing_the_same_campaign_start_one_run(
        lab: Lab, team: list[tuple[Path, dict[str, str]]], tmp_path: Path) -> None:
    campaign = yaml.safe_load((ROOT / "inventories" / "lab" / "campaigns" / "lab-demo.yml")
                              .read_text())
    campaign["waves"] = [{"name": "web", "services": [WEB], "on_failure": "stop"}]
    file = tmp_path / "team-demo.yml"
    file.write_text(yaml.safe_dump(campaign))
    procs = [start_cli(config, "--actor", "schedule", "campaign", "run", str(file), "--yes",
                       "--continue", "--json", env=env) for config, env in team]
    outs = []
    for proc in procs:
        out, err = proc.communicate(timeout=900)
        assert proc.returncode == 0, (out, err)
        outs.append(json.loads(out))
    statuses = sorted(str(o.get("status")) for o in outs)
    assert "running_elsewhere" in statuses or "nothing_to_continue" in statuses, outs
    waiting = next(o for o in outs if o.get("status") in ("running_elsewhere",
                                                           "nothing_to_continue"))
    if waiting["status"] == "running_elsewhere":
        assert waiting["hostname"] and waiting["pid"] in {p.pid for p in procs}, waiting
    for config, env in team:
        code, st = bluegreen_json(config, "campaign", "status", "lab-demo", env=env)
        assert code == 0, st
    code, hist = bluegreen_json(team[0][0], "history", "--limit", "10000", env=team[0][1])
    assert code == 0
    creates = [r for r in hist if r["command"] == "run.create"
               and r["after"].get("kind") == "campaign"]
    assert len(creates) == 1, creates
    assert served_by(lab, WEB) == "green"


def test_10_a_holder_whose_session_was_terminated_records_nothing_and_is_taken_over(
        lab: Lab, team: list[tuple[Path, dict[str, str]]], tmp_path: Path) -> None:
    """Issue 20, 10: the database ends machine a's session (pg_terminate_backend, as a
    server restart, a failover or a partition would) while its rollout patches. Its
    advisory lock went with the session: its next write is refused (nothing recorded),
    and machine b takes the run lock over (a new epoch; a's run abandoned)."""
    (a, env_a), (b, env_b) = team
    url = yaml.safe_load(a.read_text())["state"]["url"]
    key = a.parent / "audit.key"
    slow = slow_patch_config(a, tmp_path, seconds=6)
    proc = start_cli(slow, "rollout", WEB, "--yes", "--json", env=env_a)
    try:
        # the side's `patching` is written just after the journal's patch:begin: wait for
        # it, or the session may end between the two (then nothing of the patch is recorded)
        wait_for(lambda: side_state(url, key, WEB, "green") == "patching"
                 or proc.poll() is not None, 120, "the patch step on machine a")
        assert proc.poll() is None, proc.communicate()
        playbook = str(slow.parent / "slow-patch.yml")
        wait_for(lambda: bool(playbooks_running(playbook)) or proc.poll() is not None, 60,
                 "machine a's ansible-playbook")
        assert proc.poll() is None, proc.communicate()
        postgres.execute(url, "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                         " WHERE application_name LIKE ?", params=(f"bluegreen pid {proc.pid} %",))
        code, st = bluegreen_json(b, "status", WEB, env=env_b)
        assert code == 0 and st["lock"] is None, st  # its lock ended with its session
        out, _ = proc.communicate(timeout=300)
    finally:
        stop(proc)
    # the holder cancelled its playbook and waited for it before it exited
    assert not playbooks_running(playbook)
    refused = json.loads(out)
    assert proc.returncode == 1, refused
    assert "session holding the lock of web" in refused["error"], refused
    assert "nothing recorded" in refused["error"], refused
    code, st = bluegreen_json(b, "status", WEB, env=env_b)
    assert st["sides"]["green"]["state"] == "patching", st  # a's patch was not recorded
    first = st["run_in_flight"]["run_id"]
    code, doc = bluegreen_json(b, "rollout", WEB, "--yes", env=env_b, timeout=900)
    assert code == 0 and doc["to"] == "green", doc
    assert served_by(lab, WEB) == "green" and router_live(lab, WEB) == "web_green"
    for config, env in team:
        code, st = bluegreen_json(config, "status", WEB, env=env)
        assert code == 0 and st["agrees"] and st["live"] == "green", st
        assert st["last_abandoned"]["run_id"] == first, st
        code, verified = bluegreen_json(config, "audit", "verify", env=env)
        assert code == 0 and verified["ok"], verified
    code, hist = bluegreen_json(b, "history", WEB, "--limit", "10000", env=env_b)
    late = [r for r in hist if r["command"] == "rollout.patch" and r["reason"] == f"run {first}"]
    assert not late and ("run.abandon", "abandoned") in [(r["command"], r["result"])
                                                         for r in hist], hist
