"""The numbered scenarios of issue 10 on the lab, through the real CLI, real HAProxy, real
Ansible and the real SQLite store. Each asserts where traffic is four ways: a request
through the frontend, HAProxy's map in memory, the map file on disk, and `status --json`
(store agrees with router); and what the audit chain holds (it always verifies)."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

from orchestrator.lab.lab import Lab, haproxy_command
from tests.reliability.helpers import fresh_web, journal_phases, start_cli, state_db, stop, wait_for
from tests.support.cli import bluegreen, bluegreen_json
from tests.support.lab import (
    audit_ok,
    fingerprints,
    hosts_of,
    no_steps_config,
    router_live,
    served_by,
    slow_patch_config,
)

pytestmark = [pytest.mark.lab, pytest.mark.destructive]

WEB = "web"


# -- where is traffic? ------------------------------------------------------------------------


def map_file_side(lab: Lab, service: str) -> str | None:
    for line in lab.paths.map_file.read_text().splitlines():
        parts = line.split()
        if len(parts) == 2 and parts[0] == service:
            return parts[1].removeprefix(f"{service}_")
    return None


def traffic_on(lab: Lab, config: Path, side: str, service: str = WEB) -> dict[str, Any]:
    """Frontend, HAProxy memory, map file and store all say `side`; the audit verifies."""
    assert served_by(lab, service) == side
    assert router_live(lab, service) == f"{service}_{side}"
    assert map_file_side(lab, service) == side
    code, st = bluegreen_json(config, "status", service)
    assert code == 0 and st["agrees"], st
    assert st["live"] == side and st["state_live"] == side and st["pending_flip"] is None, st
    audit_ok(config)
    return dict(st)


def audit(config: Path, service: str = WEB) -> list[tuple[str, str]]:
    code, hist = bluegreen_json(config, "history", service, "--limit", "10000")
    assert code == 0, hist
    return [(r["command"], r["result"]) for r in hist]


def rollout_to_green(config: Path) -> None:
    code, doc = bluegreen_json(config, "rollout", WEB, "--yes", timeout=900)
    assert code == 0 and doc["to"] == "green", doc


def during_patch(lab: Lab, config: Path, tmp_path: Path) -> Any:
    """Start a rollout of web and return it while its patch step runs: the patch step is
    made 30 s longer (our playbook, then a pause), so what the test does next lands inside
    it for sure (the real patch step takes about 2 s)."""
    slow = slow_patch_config(config, tmp_path, seconds=30)
    proc = start_cli(slow, "rollout", WEB, "--yes", "--json")
    wait_for(lambda: ("patch", "begin") in journal_phases(state_db(lab)) or proc.poll() is not None,
             120, "the patch step")
    assert proc.poll() is None, proc.communicate()
    time.sleep(1.0)  # Ansible is at work on the standby now
    return proc


# -- 1. rollback during patching ---------------------------------------------------------------


def test_1_rollback_during_patching_aborts_the_run_and_traffic_stays(
    lab: Lab, tmp_path: Path
) -> None:
    fresh_web(lab)
    config = no_steps_config(lab)
    rollout_to_green(config)  # green verified by an earlier run, live; blue is rollback_to
    green = hosts_of(lab, WEB, "green")
    before = fingerprints(lab, green)
    proc = during_patch(lab, config, tmp_path)  # the next rollout patches blue
    try:
        code, out = bluegreen_json(config, "rollback", WEB, "--reason", "INC-1 during patch")
        assert code == 0 and not out["changed"] and out["aborted_run"], out
        assert "had not flipped yet" in out["message"] and "stays on green" in out["message"]
        out_text, _ = proc.communicate(timeout=300)
        stopped = json.loads(out_text)
        assert proc.returncode == 1 and "aborted" in stopped["error"], stopped
    finally:
        stop(proc)
    st = traffic_on(lab, config, "green")
    assert st["sides"]["blue"]["state"] == "patching", st  # interrupted: not a target
    assert st["lock"] is None and st["run_in_flight"] is None
    assert fingerprints(lab, green) == before  # the live side was never touched
    code, doc = bluegreen_json(config, "flip", WEB, "--to", "blue", "--reason", "try")
    assert code == 3 and "patching" in doc["error"], doc
    traffic_on(lab, config, "green")
    assert ("run.finish", "aborted") in audit(config)


# -- 2. rollback is not a toggle ---------------------------------------------------------------


def test_2_two_concurrent_rollbacks_give_one_flip(lab: Lab) -> None:
    fresh_web(lab)
    config = no_steps_config(lab)
    rollout_to_green(config)
    procs = [start_cli(config, "rollback", WEB, "--reason", f"INC-2 operator {i}", "--json")
             for i in (1, 2)]
    outs = []
    for proc in procs:
        out, err = proc.communicate(timeout=60)
        assert proc.returncode == 0, err
        outs.append(json.loads(out))
    assert sorted(o["changed"] for o in outs) == [False, True], outs
    assert any("already live" in o["message"] for o in outs), outs
    st = traffic_on(lab, config, "blue")
    assert st["sides"]["green"]["state"] == "failed_live" and st["rollback_to"] == "blue", st
    assert audit(config).count(("rollback", "ok")) == 1
    # the side that just failed under traffic is not a way back
    code, doc = bluegreen_json(config, "flip", WEB, "--to", "green", "--reason", "try")
    assert code == 3 and "failed_live" in doc["error"], doc
    code, doc = bluegreen_json(config, "rollback", WEB, "--reason", "again")
    assert code == 0 and not doc["changed"], doc
    traffic_on(lab, config, "blue")


# -- 3. half-done flip: set map ok, persisting fails ---------------------------------------------


def test_3_a_flip_that_cannot_be_persisted_is_recorded_and_repaired(lab: Lab) -> None:
    fresh_web(lab)
    config = no_steps_config(lab)
    saved = lab.paths.map_file.read_text()
    lab.paths.map_file.unlink()
    lab.paths.map_file.mkdir()  # cannot be replaced now (root ignores a chmod)
    try:
        proc = bluegreen(config, "flip", WEB, "--to", "green", "--force", "--reason", "INC-3")
        assert proc.returncode == 1, proc.stderr
        assert "traffic is on green, but it is not persisted" in proc.stderr, proc.stderr
        assert "fix:" in proc.stderr
        assert served_by(lab, WEB) == "green" and router_live(lab, WEB) == "web_green"
    finally:
        lab.paths.map_file.rmdir()
        lab.paths.map_file.write_text(saved)
    assert map_file_side(lab, WEB) == "blue"  # what a reload would bring back
    code, st = bluegreen_json(config, "status", WEB)
    assert code == 0 and st["agrees"] and st["live"] == "green", st  # store follows router
    assert st["flip_problem"].startswith("not persisted"), st
    assert ("flip", "incomplete") in audit(config)
    code, doc = bluegreen_json(config, "flip", WEB, "--to", "green", "--reason", "repair")
    assert code == 0 and doc["repaired"] and not doc["changed"], doc
    st = traffic_on(lab, config, "green")
    assert st["flip_problem"] is None
    lab.reload_haproxy()
    traffic_on(lab, config, "green")
    assert ("flip.repair", "ok") in audit(config)


# -- 4. two services flipping at once lose no map line ------------------------------------------


def test_4_concurrent_flips_of_two_services_keep_both_lines(fresh_lab: Lab) -> None:
    lab, config = fresh_lab, no_steps_config(fresh_lab)
    for side in ("green", "blue", "green"):
        procs = [start_cli(config, "flip", svc, "--to", side, "--force", "--reason", "INC-4")
                 for svc in ("web", "api")]
        for proc in procs:
            _, err = proc.communicate(timeout=120)
            assert proc.returncode == 0, err
        for svc in ("web", "api"):
            traffic_on(lab, config, side, svc)
    lab.reload_haproxy()
    for svc in ("web", "api"):
        traffic_on(lab, config, "green", svc)
        code, doc = bluegreen_json(config, "rollback", svc, "--reason", "back to blue")
        assert code == 0 and doc["to"] == "blue", doc


# -- 5. the command router: bake must observe; "persisted": false is refused ----------------------

LB_SCRIPT = """\
#!{python}
# A load balancer "driver" for the lab's HAProxy that never persists anything.
import json, socket, sys
SOCK, MAP = {sock!r}, {map!r}

def cmd(line):
    with socket.socket(socket.AF_UNIX) as s:
        s.connect(SOCK); s.sendall(line.encode() + b"\\n")
        return b"".join(iter(lambda: s.recv(65536), b"")).decode()

action, service = sys.argv[1], sys.argv[2]
side = sys.argv[3] if len(sys.argv) > 3 else None
if action == "live":
    for line in cmd(f"show map {{MAP}}").splitlines():
        parts = line.split()
        if len(parts) == 3 and parts[1] == service:
            print(json.dumps({{"live": parts[2].rsplit("_", 1)[1]}}))
elif action == "flip":
    cmd(f"set map {{MAP}} {{service}} {{service}}_{{side}}")
    print(json.dumps({{"ok": True, "persisted": False}}))
elif action == "health":
    print(json.dumps({{"servers": [{{"name": service + "-" + side, "status": "UP"}}]}}))
elif action == "drain":
    print(json.dumps({{"ok": True, "sessions_left": 0}}))
"""


def test_5_command_router_needs_observation_and_persistence(lab: Lab, tmp_path: Path) -> None:
    fresh_web(lab)
    script = tmp_path / "lb-switch"
    script.write_text(LB_SCRIPT.format(python=sys.executable, sock=str(lab.paths.haproxy_socket),
                                       map=str(lab.paths.map_file)))
    script.chmod(0o755)
    doc = yaml.safe_load(no_steps_config(lab).read_text())
    frontends = doc["router"]["frontends"]
    doc["router"] = {"kind": "command", "script": str(script)}
    config = tmp_path / "bluegreen.yml"
    config.write_text(yaml.safe_dump(doc))
    proc = bluegreen(config, "status", WEB)  # bake could never see a failure: refused
    assert proc.returncode == 2, proc.stderr
    assert "router.frontends" in proc.stderr and "counters" in proc.stderr
    assert "fix:" in proc.stderr
    doc["router"]["frontends"] = frontends
    config.write_text(yaml.safe_dump(doc))
    proc = bluegreen(config, "flip", WEB, "--to", "green", "--force", "--reason", "INC-5")
    assert proc.returncode == 1 and "not persisted" in proc.stderr, proc.stderr
    assert served_by(lab, WEB) == "green" and router_live(lab, WEB) == "web_green"
    code, st = bluegreen_json(config, "status", WEB)
    assert code == 0 and st["live"] == "green" and st["flip_problem"], st
    assert ("flip", "incomplete") in audit(config)
    doc["router"]["allow_unpersisted"] = True  # the operator accepts it, knowingly
    config.write_text(yaml.safe_dump(doc))
    code, out = bluegreen_json(config, "rollback", WEB, "--reason", "INC-5 back")
    assert code == 0 and out["changed"] and out["to"] == "blue", out
    traffic_on(lab, config, "blue")


# -- 6. kill -9 inside the automatic rollback -----------------------------------------------------


def test_6_kill_inside_the_auto_rollback_resumes_as_rolled_back(lab: Lab) -> None:
    fresh_web(lab)
    config = no_steps_config(lab)
    proc = bluegreen(
        config, "rollout", WEB, "--yes", "--package", "demo-openssl=3.0.15-1",
        "--package", "demo-web=1.1.1", timeout=900,
        env={"BLUEGREEN_FAILPOINT": "traffic:router:rollout.auto-rollback"},
    )
    assert proc.returncode == -9, proc.stderr[-2000:]
    assert served_by(lab, WEB) == "blue" and router_live(lab, WEB) == "web_blue"
    assert map_file_side(lab, WEB) == "blue"
    code, st = bluegreen_json(config, "status", WEB)
    assert st["state_live"] == "green" and st["pending_flip"]["to_side"] == "blue", st
    code, doc = bluegreen_json(config, "resume", timeout=300)
    assert code == 4, doc
    st = traffic_on(lab, config, "blue")
    assert st["sides"]["green"]["state"] == "failed_live" and st["run_in_flight"] is None, st
    assert ("rollout.auto-rollback", "recovered") in audit(config)
    code, doc = bluegreen_json(config, "rollback", WEB, "--reason", "INC-6")
    assert code == 0 and not doc["changed"], doc  # already back: no toggle to green
    code, doc = bluegreen_json(config, "flip", WEB, "--to", "green", "--reason", "try")
    assert code == 3 and "failed_live" in doc["error"], doc
    traffic_on(lab, config, "blue")


# -- 7. resume of a campaign's child goes through its campaign ------------------------------------


def campaign_file(tmp_path: Path, name: str, **over: Any) -> Path:
    doc: dict[str, Any] = {
        "name": name,
        "advisories": [{"id": "DEMO-1", "cves": ["CVE-2026-0001"], "severity": "high",
                        "packages": {"demo-openssl": "3.0.15-1", "demo-web": "1.0.1"}}],
        "waves": [{"services": [WEB]}],
        "window": {"always": True},
        **over,
    }
    path = tmp_path / f"{name}.yml"
    path.write_text(yaml.safe_dump(doc))
    return path


def test_7_resume_of_a_campaign_child_is_refused_with_the_campaign_command(
    lab: Lab, tmp_path: Path
) -> None:
    fresh_web(lab)
    config = no_steps_config(lab)
    camp = campaign_file(tmp_path, "needs-ok", approval={"mode": "manual", "at": "before_flip"})
    code, doc = bluegreen_json(config, "campaign", "run", str(camp), "--yes", timeout=900)
    assert code == 0 and doc["status"] == "awaiting_approval", doc
    code, st = bluegreen_json(config, "status", WEB)
    child = st["run_in_flight"]
    assert child and child["status"] == "deferred", st
    proc = bluegreen(config, "resume", child["run_id"])
    assert proc.returncode == 2, proc.stderr
    assert "bluegreen campaign resume needs-ok" in proc.stderr, proc.stderr
    st = traffic_on(lab, config, "blue")  # no flip without the campaign's approval
    assert st["sides"]["green"]["state"] == "verified"
    code, doc = bluegreen_json(config, "campaign", "abort", "needs-ok")
    assert code == 0, doc


# -- 8. rollback --to LIVE during a rollout aborts it ---------------------------------------------


def test_8_rollback_to_the_live_side_aborts_the_rollout(lab: Lab, tmp_path: Path) -> None:
    fresh_web(lab)
    config = no_steps_config(lab)
    proc = during_patch(lab, config, tmp_path)
    try:
        code, out = bluegreen_json(config, "rollback", WEB, "--to", "blue", "--reason", "INC-8")
        assert code == 0 and not out["changed"] and out["aborted_run"], out
        out_text, _ = proc.communicate(timeout=300)
        stopped = json.loads(out_text)
        assert proc.returncode == 1 and "aborted" in stopped["error"], stopped
    finally:
        stop(proc)
    st = traffic_on(lab, config, "blue")
    assert st["sides"]["green"]["state"] == "patching" and st["lock"] is None, st
    assert not [c for c in audit(config) if c[0] == "rollout.flip"]


# -- 9. the timer does not re-run a campaign that ended -------------------------------------------


def test_9_campaign_run_continue_does_nothing_after_the_last_run_ended(
    lab: Lab, tmp_path: Path
) -> None:
    fresh_web(lab)
    config = no_steps_config(lab)
    camp = campaign_file(tmp_path, "timer", approval={"mode": "manual", "at": "before_patch"})
    code, doc = bluegreen_json(config, "campaign", "run", str(camp), "--yes", "--continue")
    assert code == 0 and doc["status"] == "awaiting_approval", doc  # never ran: starts
    run_id = doc["run_id"]
    code, doc = bluegreen_json(config, "campaign", "abort", "timer")
    assert code == 0, doc
    before = audit(config)
    for _ in range(2):  # the timer fires again, twice
        code, doc = bluegreen_json(config, "campaign", "run", str(camp), "--yes", "--continue")
        assert code == 0 and doc["status"] == "nothing_to_continue", doc
        assert doc["last_run"] == run_id and "without --continue" in doc["message"], doc
    code, st = bluegreen_json(config, "campaign", "status", "timer")
    assert st["run_id"] == run_id and st["status"] == "aborted", st
    assert audit(config) == before
    assert served_by(lab, WEB) == "blue" and router_live(lab, WEB) == "web_blue"
    assert map_file_side(lab, WEB) == "blue"
    code, st = bluegreen_json(config, "status", WEB)
    assert code == 0 and st["agrees"] and st["state_live"] is None, st  # never touched
    audit_ok(config)


# -- 10. verify holds the service lock ------------------------------------------------------------


def test_10_verify_is_refused_while_a_rollout_patches(lab: Lab, tmp_path: Path) -> None:
    fresh_web(lab)
    config = no_steps_config(lab)
    proc = during_patch(lab, config, tmp_path)
    try:
        code, doc = bluegreen_json(config, "verify", WEB, "--side", "green")
        assert code == 5 and "locked by run" in doc["error"], doc
        code, out = bluegreen_json(config, "rollback", WEB, "--to", "blue", "--reason", "stop")
        assert code == 0 and out["aborted_run"], out
        proc.communicate(timeout=300)
    finally:
        stop(proc)
    st = traffic_on(lab, config, "blue")
    assert st["sides"]["green"]["verified_at"] is None, st  # no verdict was recorded


# -- 11. every traffic command stops on a disagreeing store; lab reset resets the store ----------


def test_11_flip_stops_on_a_disagreeing_store_and_lab_reset_agrees(lab: Lab) -> None:
    fresh_web(lab)
    config = no_steps_config(lab)
    rollout_to_green(config)
    lab.reset(hosts_of(lab, WEB))  # fresh roots, traffic back on blue: the store follows
    st = traffic_on(lab, config, "blue")
    assert st["sides"]["green"]["state"] == "untouched" and st["rollback_to"] is None, st
    assert ("lab.reset", "ok") in audit(config)
    code, doc = bluegreen_json(config, "flip", WEB, "--to", "green", "--reason", "after reset")
    assert code == 3 and "never verified" in doc["error"], doc  # nothing verified survived
    haproxy_command(lab.paths.haproxy_socket, f"set map {lab.paths.map_file} web web_green")
    try:  # someone moved traffic behind bluegreen's back: flip stops like everything else
        proc = bluegreen(config, "flip", WEB, "--to", "blue", "--force", "--reason", "x")
        assert proc.returncode == 1 and "router says green" in proc.stderr, proc.stderr
    finally:
        haproxy_command(lab.paths.haproxy_socket, f"set map {lab.paths.map_file} web web_blue")
    traffic_on(lab, config, "blue")


# -- 12. a verification holds only for the hosts it judged ----------------------------------------


def test_12_flip_rechecks_the_hosts_that_were_verified(lab: Lab, tmp_path: Path) -> None:
    fresh_web(lab)
    doc = yaml.safe_load(no_steps_config(lab).read_text())
    doc["services"][WEB]["fixed_versions"] = {}  # the unpatched image passes the gate
    config = tmp_path / "bluegreen.yml"
    config.write_text(yaml.safe_dump(doc))
    code, out = bluegreen_json(config, "verify", WEB, "--side", "green")
    assert code == 0, out
    code, st = bluegreen_json(config, "status", WEB)
    assert st["sides"]["green"]["state"] == "verified" and len(st["sides"]["green"]["hosts"]) == 2
    lab.exec("web-green-1", ["apt-mark", "hold", "demo-web"])  # the dpkg database changes
    try:
        code, out = bluegreen_json(config, "flip", WEB, "--to", "green", "--reason", "CHG-12")
        assert code == 3, out
        assert "web-green-1" in out["error"] and "dpkg database changed" in out["error"], out
        traffic_on(lab, config, "blue")
        # rollback skips the SSH round trip by design (and here has nowhere to go)
        code, out = bluegreen_json(config, "rollback", WEB, "--reason", "INC-12")
        assert code == 0 and not out["changed"], out
    finally:
        lab.exec("web-green-1", ["apt-mark", "unhold", "demo-web"])
    lab.reset(["web-green-1"])  # re-imaged: the store forgets what it verified there
    code, out = bluegreen_json(config, "flip", WEB, "--to", "green", "--reason", "CHG-12")
    assert code == 3 and "never verified" in out["error"], out
    traffic_on(lab, config, "blue")
