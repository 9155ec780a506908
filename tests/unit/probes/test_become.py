"""`ssh.become`: one `sudo -n` for every command on the hosts, and the security sections that
only root can read fail (naming the user) when read as another user, never come back empty."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
import yaml

from orchestrator.config.loaded import load_config
from orchestrator.inventory import Host
from orchestrator.patching.runner import _envvars
from orchestrator.probes.drift import FingerprintError, parse_fingerprint
from orchestrator.probes.gate import targets_for
from orchestrator.probes.security import NEEDS_ROOT, SECTIONS, _root_only
from orchestrator.processes import SUDO, as_root
from tests.unit.config.test_loaded import minimal, write
from tests.unit.probes.test_drift import OUTPUT, M

ROOT_ONLY = {"authorized-key", "sudoers", "setuid", "cron", "listener"}


def _sh(command: str, *, as_nobody: bool = False) -> subprocess.CompletedProcess[str]:
    prefix = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"] if as_nobody else []
    return subprocess.run([*prefix, "sh", "-c", command], capture_output=True, text=True,
                          timeout=10, check=False)


def test_as_root_quotes_any_command_for_sudo() -> None:
    command = """printf '%s|' 'a b' "it's" "$((1 + 1))\""""
    wrapped = as_root(command)
    assert wrapped.startswith(f"{SUDO} sh -c '")
    # without sudo on this machine: what sudo would run is exactly the command
    assert _sh(wrapped.removeprefix(SUDO)).stdout == _sh(command).stdout == "a b|it's|2|"
    assert as_root(command.encode()) == wrapped.encode()


def test_root_only_sections_fail_naming_the_user_when_not_root() -> None:
    assert {kind for kind, cmd in SECTIONS if NEEDS_ROOT in cmd} == ROOT_ONLY
    as_nobody = _sh(_root_only("echo read"), as_nobody=True)
    assert as_nobody.returncode == 1
    assert "needs root: read as nobody (uid 65534)" in as_nobody.stdout
    assert "ssh.become: true" in as_nobody.stdout
    assert _sh(_root_only("echo read")).stdout == "read\n"  # this test runs as root


def test_a_section_read_without_root_is_an_error_not_an_empty_section() -> None:
    denied = OUTPUT.replace(f"{M} sudoers\n", f"{M} sudoers\n{NEEDS_ROOT}: read as deploy\n")
    start = denied.index(f"{M} sudoers\n")
    rc_at = denied.index(f"{M}-rc 0", start)
    denied = denied[:rc_at] + f"{M}-rc 1" + denied[rc_at + len(f"{M}-rc 0"):]
    with pytest.raises(FingerprintError, match="sudoers section failed.*needs root"):
        parse_fingerprint("h", denied)


def test_become_reaches_the_probes_and_ansible(tmp_path: Path) -> None:
    data = minimal()
    data["ssh"] = {"known_hosts": "known_hosts", "user": "deploy", "become": True}
    config = load_config(write(tmp_path, data))
    (target,) = targets_for(config, [Host("h1", "10.0.0.1", user="deploy")])
    assert target.become and target.user == "deploy"
    env = _envvars(config, tmp_path, tmp_path / "cp", 1)
    assert env["ANSIBLE_BECOME"] == "True" and env["ANSIBLE_BECOME_METHOD"] == "sudo"
    assert "-n" in env["ANSIBLE_BECOME_FLAGS"].split()
    plain = load_config(write(tmp_path, minimal(), "plain.yml"))
    assert not targets_for(plain, [Host("h1", "10.0.0.1")])[0].become
    assert "ANSIBLE_BECOME" not in _envvars(plain, tmp_path, tmp_path / "cp", 1)
    assert yaml.safe_load((tmp_path / "bluegreen.yml").read_text())["ssh"]["become"] is True
