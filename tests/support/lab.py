"""Looking at the lab from the outside, the way the tests check what bluegreen did: package
versions and fingerprints of hosts, who serves traffic, what HAProxy routes to, and the
consistency every run must leave behind."""

from __future__ import annotations

import hashlib
import json
import shutil
import time
import urllib.request
from pathlib import Path
from typing import Any

import yaml

from orchestrator.lab.lab import Lab, haproxy_command
from tests.support.cli import bluegreen_json

ROOT = Path(__file__).resolve().parents[2]

FIXED = {"demo-openssl": "3.0.15-1", "demo-web": "1.0.1"}
VULNERABLE = {"demo-openssl": "3.0.11-1", "demo-web": "1.0.0"}


def hosts_of(lab: Lab, service: str, side: str | None = None) -> list[str]:
    return [
        h["name"]
        for h in lab.status()["hosts"]
        if h["service"] == service and (side is None or h["side"] == side)
    ]


def fingerprint(lab: Lab, host: str) -> str:
    """What must not change on a live host: dpkg database, demo files, demo-web's PID."""
    out = lab.exec(
        host,
        [
            "sh",
            "-c",
            "md5sum /var/lib/dpkg/status /usr/lib/demo-openssl/libdemossl.so.3 "
            "/usr/lib/demo-web/server.py; systemctl show -p MainPID demo-web",
        ],
    ).stdout
    return hashlib.sha256(out.encode()).hexdigest()


def fingerprints(lab: Lab, hosts: list[str]) -> dict[str, str]:
    return {h: fingerprint(lab, h) for h in hosts}


def versions(lab: Lab, host: str) -> dict[str, str]:
    out = lab.exec(
        host, ["dpkg-query", "-W", "-f=${Package} ${Version}\\n", "demo-web", "demo-openssl"]
    ).stdout
    return dict(line.split() for line in out.splitlines())


def served_by(lab: Lab, service: str) -> str:
    """The side that answers a real request through the load balancer's frontend."""
    url = lab.status()["frontends"][service] + "/version"
    with urllib.request.urlopen(url, timeout=5) as r:
        return str(json.loads(r.read())["side"])


def router_live(lab: Lab, service: str) -> str:
    """The live backend straight from HAProxy's memory (not through bluegreen)."""
    out = haproxy_command(lab.paths.haproxy_socket, f"show map {lab.paths.map_file}")
    for line in out.splitlines():
        parts = line.split()
        if len(parts) >= 3 and parts[1] == service:
            return parts[2]
    raise AssertionError(f"no map entry for {service}: {out!r}")


def reset_state_dir(lab: Lab) -> None:
    """A fresh state store, and with it a fresh witness file (the key stays): a store that
    starts over under the old witness would rightly be reported as replaced."""
    state_dir = lab.paths.root / "state"
    if state_dir.exists():
        shutil.rmtree(state_dir)
    state_dir.mkdir(mode=0o700)
    lab.paths.witness_file.unlink(missing_ok=True)


def audit_ok(config: Path) -> None:
    code, doc = bluegreen_json(config, "audit", "verify")
    assert code == 0 and doc["ok"], doc


def assert_consistent(lab: Lab, config: Path, service: str = "web") -> dict[str, Any]:
    """Router and state agree, no lock, no run in flight, traffic on a trusted side, audit ok."""
    code, st = bluegreen_json(config, "status", service)
    assert code == 0, st
    assert st["agrees"], st
    assert st["lock"] is None, st
    assert st["run_in_flight"] is None, st
    assert served_by(lab, service) == st["live"]
    live_side = st["sides"][st["live"]]
    if live_side["patch_level"] or live_side["verified_at"]:
        assert live_side["verified_after_patch"], f"traffic on an unverified side: {st}"
    audit_ok(config)
    return dict(st)


def playbooks_running(needle: str) -> list[str]:
    """Command lines of the ansible-playbook processes (and their leash, not zombies) whose
    command line holds `needle` (a playbook or inventory path of one test's runs)."""
    found = []
    for proc in Path("/proc").iterdir():
        try:
            cmdline = (proc / "cmdline").read_bytes().decode(errors="replace")
            state = (proc / "stat").read_text().rsplit(")", 1)[1].split()[0]
        except (OSError, IndexError):
            continue
        if state != "Z" and "ansible-playbook" in cmdline and needle in cmdline:
            found.append(f"{proc.name}: {cmdline.replace(chr(0), ' ')}")
    return found


def no_playbook_left(needle: str, timeout: float = 60) -> None:
    """Waits until no ansible-playbook of `needle` runs (a bluegreen that ended or was
    killed takes its playbook with it); fails naming what still runs."""
    deadline = time.monotonic() + timeout
    while playbooks_running(needle):
        if time.monotonic() > deadline:
            raise AssertionError(f"ansible-playbook left running: {playbooks_running(needle)}")
        time.sleep(0.2)


def slow_patch_config(config: Path, tmp_path: Path, *, seconds: int) -> Path:
    """A copy of `config` whose web patch step takes `seconds` longer: our playbook, then a
    pause (for tests that must act while a patch step is still running: the real patch
    step takes about 2 s on the lab)."""
    slow = tmp_path / "slow-patch.yml"
    slow.write_text(
        f"- import_playbook: {ROOT / 'playbooks' / 'patch.yml'}\n"
        '- hosts: "{{ target }}"\n  gather_facts: false\n'
        f"  tasks: [{{ansible.builtin.pause: {{seconds: {seconds}}}, run_once: true}}]\n"
    )
    doc = yaml.safe_load(config.read_text())
    doc["services"]["web"]["patch"]["playbook"] = str(slow)
    path = tmp_path / "bluegreen-slow-patch.yml"
    path.write_text(yaml.safe_dump(doc))
    return path


QUICK_BAKE_S = 3.0  # the lab's bake watches 10 s


def no_steps(doc: dict[str, Any], service: str = "web") -> dict[str, Any]:
    """`doc` (a parsed bluegreen.yml) whose `service` bakes without steps: the flip, then
    `bake.seconds` watched (the lab's web bakes as steps judged on its Prometheus, and with
    steps no user traffic never passes). For lab tests that roll web out with no user
    traffic and are not about the steps (tests/integration/test_bake_steps_lab.py is)."""
    bake = doc["services"][service]["bake"]
    bake.pop("steps", None)
    bake.pop("analysis", None)
    return doc


def no_steps_config(lab: Lab) -> Path:
    """The lab's bluegreen.yml without web's steps (`no_steps`): today's plain bake, same
    store, key, router; beside it in the lab's directory (gone with `lab down`)."""
    path = lab.paths.root / "bluegreen-no-steps.yml"
    tmp = path.with_suffix(".tmp")
    tmp.write_text(yaml.safe_dump(no_steps(yaml.safe_load(lab.paths.config.read_text())),
                                  sort_keys=False))
    tmp.chmod(0o600)
    tmp.replace(path)
    return path


def quick_bake(doc: dict[str, Any], service: str = "web") -> dict[str, Any]:
    """`doc` (a parsed bluegreen.yml) whose `service` bakes QUICK_BAKE_S without steps
    (`no_steps`) instead of the lab's 10 s, still probed every 0.2 s: for tests whose
    rollouts must bake and pass but whose assertions are about something else (CI time;
    the bake itself is tested with the lab's own config, e.g. test_bake_steps_lab.py)."""
    no_steps(doc, service)["services"][service]["bake"]["seconds"] = QUICK_BAKE_S
    return doc


def quick_bake_config(config: Path, tmp_path: Path) -> Path:
    """A copy of `config` with a quick bake of web (`quick_bake`): same store, key, router."""
    path = tmp_path / "bluegreen-quick-bake.yml"
    path.write_text(yaml.safe_dump(quick_bake(yaml.safe_load(config.read_text()))))
    return path
