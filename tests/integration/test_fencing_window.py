"""Issue 20 scenarios 9, 11 and 16 on the lab, through the real CLI (real HAProxy, real
Ansible, the real SQLite store), around one campaign whose patch step is held open:

- 9: `state copy` of the store while the campaign's child patches is refused, naming the
  run and the lock's holder; nothing is written to the target;
- 16: a long-running `watch` publishes the audit head (to its own witness file) after the
  round that recorded a deviation, while it still runs;
- 11: the campaign's window closes while its flip waits for the traffic lock (held by the
  test): the kernel asks the window last, under the lock, and refuses; nothing moved.

Each ends with traffic (a request through the frontend), HAProxy's memory and map file,
the store and `audit verify` (`traffic_on`). Scenario 15 (two starts of one campaign) is
test_team_mode.py::test_two_timers_firing_the_same_campaign_start_one_run.
"""

from __future__ import annotations

import json
import signal
import subprocess
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import yaml

from orchestrator.lab.lab import Lab
from orchestrator.state import SQLiteStateStore
from tests.integration.test_kernel_scenarios import traffic_on
from tests.reliability.helpers import fresh_web, start_cli, state_db, stop, wait_for
from tests.support.cli import BLUEGREEN, bluegreen_json
from tests.support.lab import ROOT, hosts_of, no_steps_config

pytestmark = [pytest.mark.lab, pytest.mark.destructive]

WEB = "web"
RELEASE = "/tmp/bluegreen-test-release"  # on the green hosts: the held patch step ends
WINDOW_S = 35  # the window closes this long after the campaign starts
LOCK_S = 20  # the patch is let go this long before the window closes: the flip waits


def held_patch_config(config: Path, tmp_path: Path) -> Path:
    """The lab's config whose web patch step is our playbook, then a wait on each green
    host for RELEASE (the test creates it): the step ends when the test says so."""
    play = tmp_path / "held-patch.yml"
    play.write_text(
        f"- import_playbook: {ROOT / 'playbooks' / 'patch.yml'}\n"
        '- hosts: "{{ target }}"\n  gather_facts: false\n'
        f"  tasks: [{{ansible.builtin.wait_for: {{path: {RELEASE}, timeout: 300}}}}]\n")
    doc = yaml.safe_load(config.read_text())
    doc["services"]["web"]["patch"]["playbook"] = str(play)
    path = tmp_path / "bluegreen-held.yml"
    path.write_text(yaml.safe_dump(doc))
    return path


def watch_config(config: Path, tmp_path: Path) -> tuple[Path, Path]:
    """The lab's config (same store and key) with a witness file of its own: what it holds
    was published by the commands run with this config only (the watch)."""
    doc = yaml.safe_load(config.read_text())
    witness = tmp_path / "watch-witness.log"
    doc["audit"]["witness"] = {"syslog": "off", "file": str(witness)}
    path = tmp_path / "watch" / "bluegreen.yml"
    path.parent.mkdir()
    path.write_text(yaml.safe_dump(doc))
    return path, witness


def phases(db: Path) -> set[tuple[str, str]]:
    """(step, phase) of the newest web rollout (the campaign's child)."""
    with SQLiteStateStore(db) as store:
        runs = store.list_runs(service=WEB)
        return {(e.step, e.phase) for e in store.journal(runs[-1].run_id)} if runs else set()


def newest_seq(db: Path, command: str) -> int:
    with SQLiteStateStore(db) as store:
        return max(r.seq for r in store.audit_records(WEB) if r.command == command)


def witnessed(witness: Path) -> int:
    if not witness.exists():
        return 0
    return max((int(ln.split("seq=")[1].split()[0]) for ln in witness.read_text().splitlines()),
               default=0)


def test_copy_watch_and_a_window_that_closes_while_the_flip_waits(
        lab: Lab, tmp_path: Path) -> None:
    fresh_web(lab)
    config, db = no_steps_config(lab), state_db(lab)
    green = hosts_of(lab, WEB, "green")
    watching, witness = watch_config(config, tmp_path)
    code, doc = bluegreen_json(watching, "baseline", "save", WEB)
    assert code == 0, doc
    closes = datetime.now(UTC) + timedelta(seconds=WINDOW_S)
    campaign = yaml.safe_load((ROOT / "inventories" / "lab" / "campaigns" / "lab-demo.yml")
                              .read_text())
    campaign["waves"] = [{"name": "web", "services": [WEB], "on_failure": "stop"}]
    campaign["window"] = {"intervals": [{"start": (closes - timedelta(hours=1)).isoformat(),
                                         "end": closes.isoformat()}]}
    file = tmp_path / "closing.yml"
    file.write_text(yaml.safe_dump(campaign))
    proc = start_cli(held_patch_config(config, tmp_path), "campaign", "run", str(file),
                     "--yes", "--json")
    watch: subprocess.Popen[str] | None = None
    try:
        wait_for(lambda: ("patch", "begin") in phases(db) or proc.poll() is not None, 120,
                 "the campaign child's patch step")
        assert proc.poll() is None, proc.communicate()
        with SQLiteStateStore(db) as store:
            lock = store.get_lock(WEB)
        assert lock is not None and lock.pid == proc.pid, lock

        # 9: the store is in use: refused, each thing named, nothing written
        target = tmp_path / "copy" / "state.db"
        key = yaml.safe_load(config.read_text())["audit"]["key_file"]
        code, doc = bluegreen_json(config, "state", "copy", "--from", f"sqlite:///{db}",
                                   "--to", f"sqlite:///{target}", "--key-file", key)
        assert code == 1 and "in use; nothing was copied" in doc["error"], doc
        assert f"{WEB} is locked by run {lock.run_id} (pid {proc.pid}" in doc["error"], doc
        assert f"run {lock.run_id} (rollout of {WEB}) is running" in doc["error"], doc
        assert not target.exists(), doc

        with SQLiteStateStore(db) as traffic, traffic.traffic_lock(WEB, command="test"):
            # 16: a long-running watch publishes the head of its deviation while it runs
            watch = subprocess.Popen([*BLUEGREEN, "-c", str(watching), "watch", WEB,
                                      "--interval", "1"], stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, text=True)
            # 11: the patch ends LOCK_S before the window closes; the flip waits for us
            time.sleep(max(0.0, (closes - datetime.now(UTC)).total_seconds() - LOCK_S))
            for host in green:
                lab.exec(host, ["touch", RELEASE])
            wait_for(lambda: ("flip", "begin") in phases(db) or proc.poll() is not None, 60,
                     "the flip step")
            assert proc.poll() is None, proc.communicate()
            assert datetime.now(UTC) < closes, "the flip began after the window closed"
            lab.exec("web-blue-1", ["sh", "-c", "echo '* * * * * root true' > "
                                    "/etc/cron.d/bgtest-window"])
            wait_for(lambda: witnessed(witness) >= newest_seq_or_zero(db, "deviation") > 0,
                     60, "the watch's deviation to be witnessed")
            assert watch.poll() is None  # published while it runs, not at its exit
            watch.send_signal(signal.SIGTERM)
            watch.communicate(timeout=60)
            wait_for(lambda: datetime.now(UTC) > closes + timedelta(seconds=1),
                     WINDOW_S + 5, "the window to close")
            assert proc.poll() is None and ("flip", "end") not in phases(db)
        out, err = proc.communicate(timeout=300)
    finally:
        if watch is not None:
            stop(watch)
        stop(proc)
        lab.exec("web-blue-1", ["rm", "-f", "/etc/cron.d/bgtest-window"])
        for host in green:
            lab.exec(host, ["rm", "-f", RELEASE])
    result = json.loads(out)
    assert proc.returncode == 6, (result, err)  # deferred: the window closed
    st = traffic_on(lab, config, "blue")  # frontend, HAProxy memory + map file, store, audit
    assert st["sides"]["green"]["state"] == "verified", st
    with SQLiteStateStore(db) as store:
        records = [(r.command, r.result) for r in store.audit_records(WEB)]
        child_run = store.list_runs(service=WEB)[-1]
    assert child_run.status == "deferred", child_run
    assert not [c for c, _ in records if c == "rollout.flip"], records


def newest_seq_or_zero(db: Path, command: str) -> int:
    try:
        return newest_seq(db, command)
    except ValueError:
        return 0
