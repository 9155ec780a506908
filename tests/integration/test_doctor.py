"""`bluegreen doctor` and the rollout's precheck on the lab: a good setup passes; each
mistake a new team makes (socket at `level operator`, no confirm header, a host key missing
from known_hosts, a map path that differs, sudo that needs a password) fails `doctor` and
stops a rollout before any host is touched, each naming its fix; a non-root `deploy` user
with `ssh.become` reads every section of the security fingerprint, and without sudo the
fingerprint is an error naming the section, never a pass.

Every variant is a copy of the lab's config (own state store, audit key and witness) in
tmp_path; the lab itself (HAProxy, hosts) is only read, and the `deploy` user is removed
at the end.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from orchestrator.config.loaded import load_config
from orchestrator.inventory import load_fleet
from orchestrator.lab.lab import Lab
from orchestrator.probes.drift import KINDS, read_fingerprints
from orchestrator.probes.gate import targets_for
from tests.support.cli import bluegreen, bluegreen_json
from tests.support.lab import fingerprints, hosts_of, no_steps_config

pytestmark = [pytest.mark.lab]

WEB = ("web-blue-1", "web-blue-2", "web-green-1", "web-green-2")


def variant(lab: Lab, where: Path, edit: Callable[[dict[str, Any]], None]) -> Path:
    """A copy of the lab's config with its own store, key and witness, then `edit`ed."""
    where.mkdir(parents=True, exist_ok=True)
    doc = yaml.safe_load(no_steps_config(lab).read_text())
    doc["state"] = {"path": str(where / "state.db")}
    doc["audit"] = {"key_file": str(where / "audit.key"),
                    "witness": {"syslog": "off", "file": str(where / "witness.log")}}
    edit(doc)
    path = where / "bluegreen.yml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


def failed(config: Path) -> dict[str, dict[str, Any]]:
    code, doc = bluegreen_json(config, "doctor", "web", timeout=120)
    assert code == 1, doc
    return {c["name"]: c for c in doc["checks"] if c["ok"] is False}


def refused_before_any_host(lab: Lab, config: Path, fix: str, *, by_doctor: bool = True) -> None:
    """`rollout web` stops in its precheck with `fix`, and no host of web changed
    (`by_doctor=False`: the router's own answer stops it even earlier, when the precheck
    asks which side is live)."""
    before = fingerprints(lab, hosts_of(lab, "web"))
    proc = bluegreen(config, "rollout", "web", "--yes", timeout=300)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert fix in proc.stderr, proc.stderr
    assert ("not ready, no host was touched" in proc.stderr) == by_doctor, proc.stderr
    assert fingerprints(lab, hosts_of(lab, "web")) == before


@pytest.fixture
def deploy_user(lab: Lab) -> Iterator[Callable[[str | None], None]]:
    """Call it with a sudoers line (None: no sudoers entry) for `deploy` on web's hosts,
    made on first use with root's authorized key. Removed at the end."""

    def sudoers(line: str | None) -> None:
        for host in WEB:
            lab.exec(host, ["sh", "-c", "id deploy >/dev/null 2>&1 || { useradd -m -s /bin/sh"
                            " deploy && install -d -o deploy -m 700 /home/deploy/.ssh &&"
                            " install -o deploy -m 600 /root/.ssh/authorized_keys"
                            " /home/deploy/.ssh/authorized_keys; }"])
            script = ("rm -f /etc/sudoers.d/deploy" if line is None else
                      f"echo '{line}' > /etc/sudoers.d/deploy && chmod 440 /etc/sudoers.d/deploy"
                      " && visudo -cq")
            lab.exec(host, ["sh", "-c", script])

    yield sudoers
    for host in WEB:
        lab.exec(host, ["sh", "-c", "rm -f /etc/sudoers.d/deploy; "
                        "userdel -f -r deploy 2>/dev/null; true"], check=False)


def as_deploy(lab: Lab, where: Path, *, become: bool, own_store: bool = True) -> Path:
    """The lab's config with `ssh.user: deploy` (and `ansible_user: deploy`); `own_store`
    False: the lab's own state store, key and witness."""
    inventory = yaml.safe_load(lab.paths.inventory.read_text())
    inventory["all"]["vars"]["ansible_user"] = "deploy"
    where.mkdir(parents=True, exist_ok=True)
    (where / "hosts.yml").write_text(yaml.safe_dump(inventory))

    def edit(doc: dict[str, Any]) -> None:
        doc["inventory"] = str(where / "hosts.yml")
        doc["ssh"].update(user="deploy", become=become)

    return variant(lab, where, edit) if own_store else same_store(lab, where, edit)


def same_store(lab: Lab, where: Path, edit: Callable[[dict[str, Any]], None]) -> Path:
    """A copy of the lab's config that keeps its state store, audit key and witness."""
    where.mkdir(parents=True, exist_ok=True)
    doc = yaml.safe_load(no_steps_config(lab).read_text())
    edit(doc)
    path = where / "bluegreen.yml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


def sudo_refuses(lab: Lab, where: Path, prefix: str) -> Path:
    """A copy of the lab's inventory whose hosts named `prefix...` have Ansible become a
    user that does not exist (sudo refuses before any module runs)."""
    inventory = yaml.safe_load(lab.paths.inventory.read_text())

    def walk(group: dict[str, Any]) -> None:
        for name, host in (group.get("hosts") or {}).items():
            if name.startswith(prefix):
                group["hosts"][name] = {**(host or {}), "ansible_become": True,
                                        "ansible_become_user": "bg-no-such-user"}
        for child in (group.get("children") or {}).values():
            walk(child or {})

    walk(inventory["all"])
    where.mkdir(parents=True, exist_ok=True)
    (where / "hosts.yml").write_text(yaml.safe_dump(inventory))
    return where / "hosts.yml"


def rollback_side(config: Path) -> dict[str, Any]:
    code, doc = bluegreen_json(config, "status", "web")
    assert code == 0, doc
    return dict(doc)


def test_doctor_passes_the_lab_and_each_mistake_fails_doctor_and_the_precheck(
        lab: Lab, tmp_path: Path) -> None:
    good = variant(lab, tmp_path / "good", lambda doc: None)
    code, doc = bluegreen_json(good, "doctor", timeout=120)
    assert code == 0, [c for c in doc["checks"] if not c["ok"]]
    names = {c["name"] for c in doc["checks"]}
    assert {"router socket level", "router map", "router server state", "confirm header web",
            "ssh web-green-1", "ansible-ssh web-green-1", "root web-green-1",
            "health web-green-1", "state store", "witness file"} <= names

    # 0. the key only in the inventory (ansible_ssh_private_key_file), none in bluegreen.yml:
    #    the probes log in with it as Ansible does: doctor passes, and a verification
    #    judges the hosts (exit 0, or 3 when green is not patched yet), never exit 1
    #    "was not verified: this machine cannot connect" (what it was before)
    inventory_key = variant(lab, tmp_path / "inventory-key",
                            lambda doc: doc["ssh"].pop("private_key_file"))
    code, doc = bluegreen_json(inventory_key, "doctor", "web", timeout=120)
    assert code == 0, [c for c in doc["checks"] if not c["ok"]]
    proc = bluegreen(inventory_key, "verify", "web", "--side", "green", timeout=300)
    assert proc.returncode in (0, 3), proc.stdout + proc.stderr
    assert "cannot connect" not in proc.stdout + proc.stderr

    # 1. the admin socket at `level operator`: doctor and the precheck say so (plan too:
    #    a unit test, tests/unit/doctor/test_checks.py)
    operator = variant(lab, tmp_path / "operator", lambda doc: doc["router"].update(
        socket=str(lab.paths.haproxy_operator_socket)))
    check = failed(operator)["router socket level"]
    assert "level 'operator'" in check["detail"] and "`level admin`" in check["fix"]
    refused_before_any_host(lab, operator, "level admin")

    # 2. no confirm header (here: the config names one the frontend does not set)
    header = variant(lab, tmp_path / "header", lambda doc: doc["router"].update(
        confirm_header="X-Doctor-Missing"))
    check = failed(header)["confirm header web"]
    assert "has no X-Doctor-Missing header" in check["detail"]
    refused_before_any_host(lab, header, "http-response set-header X-Doctor-Missing %b")

    # 3. a host key missing from known_hosts: named by the entry looked up
    address = next(h["address"] for h in lab.status()["hosts"] if h["name"] == "web-green-1")
    known = tmp_path / "known_hosts"
    known.write_text("".join(line for line in lab.paths.known_hosts.read_text().splitlines(True)
                             if address not in line.split(" ", 1)[0].split(",")))
    keyless = variant(lab, tmp_path / "keyless",
                      lambda doc: doc["ssh"].update(known_hosts=str(known)))
    bad = failed(keyless)
    assert set(bad) == {"ssh web-green-1", "ansible-ssh web-green-1"}, bad
    for check in bad.values():
        assert f"`{address}`" in check["detail"] and str(known) in check["detail"]
        assert f"ssh-keyscan {address} >> {known}" in check["fix"]
    refused_before_any_host(lab, keyless, f"ssh-keyscan {address}")

    # 4. a map path that differs from the one HAProxy loaded
    other_map = variant(lab, tmp_path / "map", lambda doc: doc["router"].update(
        map_file=str(tmp_path / "other.map")))
    check = failed(other_map)["router map"]
    # the maps HAProxy has are listed (the exposure maps beside the live one)
    has = check["detail"].split("it has: ", 1)[1]
    assert str(lab.paths.map_file) in [m.strip() for m in has.split(",")], check["detail"]
    refused_before_any_host(lab, other_map, "`map_file` must be the exact path", by_doctor=False)


def test_a_deploy_user_with_become(lab: Lab, tmp_path: Path,
                                   deploy_user: Callable[[str | None], None]) -> None:
    become = as_deploy(lab, tmp_path / "become", become=True)

    # 5. sudo that needs a password: doctor and the precheck name the sudoers fix
    deploy_user("deploy ALL=(ALL) ALL")
    bad = failed(become)
    assert "a password is required" in bad["sudo web-green-1"]["detail"]
    assert "NOPASSWD" in bad["sudo web-green-1"]["fix"]

    # passwordless sudo: doctor passes, and the fingerprint read as deploy has every
    # section, root's own (authorized keys, sudoers) included
    deploy_user("deploy ALL=(root) NOPASSWD: ALL")
    code, doc = bluegreen_json(become, "doctor", "web", timeout=120)
    assert code == 0, [c for c in doc["checks"] if not c["ok"]]
    config = load_config(become)
    targets = targets_for(config, load_fleet(config).service("web").green)
    assert all(t.user == "deploy" and t.become for t in targets)
    prints, errors = read_fingerprints(targets)
    assert not errors, errors
    for fp in prints.values():
        assert set(fp.items) == set(KINDS)
        assert any(key.startswith("root ") for key in fp.items["authorized-key"])
        assert "/etc/sudoers.d/deploy" in fp.items["sudoers"]
        assert any(owner.startswith("/usr/sbin/sshd") for owner in fp.items["listener"].values())

    # without sudo (no sudoers entry): doctor says which hosts; drift is an error
    deploy_user(None)
    bad = failed(become)
    assert {"sudo web-green-1", "root web-green-1"} <= set(bad)
    drift = bluegreen(become, "drift", "web", timeout=300)
    assert drift.returncode != 0 and "sudo" in drift.stdout + drift.stderr

    # deploy without become: the root-only sections are errors naming the section and the user
    plain = as_deploy(lab, tmp_path / "plain", become=False)
    bad = failed(plain)
    assert "ssh.become is off" in bad["root web-green-1"]["detail"]
    proc = bluegreen(plain, "drift", "web", "--json", timeout=300)
    assert proc.returncode != 0, proc.stdout
    text = json.dumps(json.loads(proc.stdout)) if proc.stdout.strip() else proc.stderr
    assert "section failed" in text and "needs root: read as deploy" in text, text
    shutil.rmtree(tmp_path, ignore_errors=True)


@pytest.mark.destructive
def test_the_orchestrators_own_mistakes_cost_no_rollback_side(
        fresh_lab: Lab, tmp_path: Path, deploy_user: Callable[[str | None], None]) -> None:
    lab, config = fresh_lab, no_steps_config(fresh_lab)
    code, doc = bluegreen_json(config, "rollout", "web", "--yes", timeout=600)
    assert code == 0, doc  # green live, blue the rollback side
    before = rollback_side(config)
    assert before["rollback_eligible"] and before["rollback_to"] == "blue", before

    # a verification from a machine whose known_hosts lacks every key judged nothing: an
    # error, audited, and blue is not demoted
    (tmp_path / "empty_known_hosts").write_text("")
    blind = same_store(lab, tmp_path / "blind", lambda doc: doc["ssh"].update(
        known_hosts=str(tmp_path / "empty_known_hosts")))
    proc = bluegreen(blind, "verify", "web", "--side", "blue", timeout=300)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "was not verified" in proc.stderr and "bluegreen doctor web" in proc.stderr
    after = rollback_side(config)
    assert after["rollback_eligible"], after
    assert after["sides"]["blue"]["state"] == before["sides"]["blue"]["state"]
    code, history = bluegreen_json(config, "history", "web")
    assert any(r["command"] == "verify.error" for r in history), history

    # a rollout whose sudo wants a password stops before blue is touched
    deploy_user("deploy ALL=(ALL) ALL")
    sudo = as_deploy(lab, tmp_path / "sudo", become=True, own_store=False)
    refused_before_any_host(lab, sudo, "NOPASSWD")
    assert rollback_side(config)["rollback_eligible"]

    # a patch that begins and fails before any task ran (the inventory gives blue's hosts a
    # become user that does not exist: the precheck passes, Ansible's sudo refuses): blue
    # gets back its state, audited with why, and stays the eligible rollback side
    hosts = fingerprints(lab, hosts_of(lab, "web"))
    refusing = same_store(lab, tmp_path / "refusing", lambda doc: doc.update(
        inventory=str(sudo_refuses(lab, tmp_path / "refusing", "web-blue-"))))
    proc = bluegreen(refusing, "rollout", "web", "--yes", timeout=600)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "no host of blue was changed" in proc.stderr, proc.stderr
    assert "sudo refused before any task ran" in proc.stderr, proc.stderr
    assert "bluegreen resume" not in proc.stderr and "bluegreen rollout web" in proc.stderr
    assert fingerprints(lab, hosts_of(lab, "web")) == hosts
    after = rollback_side(config)
    assert after["rollback_eligible"], after
    assert after["sides"]["blue"]["state"] == before["sides"]["blue"]["state"], after
    code, history = bluegreen_json(config, "history", "web")
    assert any(r["command"] == "rollout.patch.untouched" for r in history), history

    code, doc = bluegreen_json(config, "rollback", "web", "--reason", "test", timeout=120)
    assert code == 0 and doc["to"] == "blue", doc
