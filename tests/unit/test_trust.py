"""Colleagues' files are code (issue 21, item 14): the inventory, playbooks, suites, router
scripts and bluegreen.yml are refused before they are read when group/others can write them
(or a directory above them), or another non-root user owns them; the error names the file,
the mode or owner, and the fix."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from orchestrator.errors import BadInput
from orchestrator.trust import check_trusted, check_trusted_tree

INVENTORY = """\
web_blue:
  hosts:
    b1: {ansible_host: 10.0.0.1}
web_green:
  hosts:
    g1: {ansible_host: 10.0.0.2}
"""
CONFIG = """\
version: 1
inventory: hosts.yml
ssh: {{known_hosts: known_hosts}}
router: {{kind: command, script: {script}, counters: true}}
services:
  web:
    sides: {{blue: web_blue, green: web_green}}
    patch: {{packages: [{{name: demo-web}}]}}
"""


def refused(path: Path, what: str = "inventory") -> str:
    with pytest.raises(BadInput) as info:
        check_trusted_tree(path, what)
    assert info.value.exit_code == 2
    return str(info.value)


def test_own_files_in_private_and_sticky_dirs_pass(tmp_path: Path) -> None:
    inv = tmp_path / "hosts.yml"
    inv.write_text(INVENTORY)
    check_trusted(inv, "inventory")  # pytest's tmp dirs are 0700, /tmp is 1777 (sticky)
    assert oct(Path("/tmp").stat().st_mode & 0o7777) == "0o1777"
    check_trusted(tmp_path / "missing.yml", "inventory")  # the reader says "not found"


def test_group_or_other_writable_file_or_parent_is_refused(tmp_path: Path) -> None:
    inv = tmp_path / "team" / "hosts.yml"
    inv.parent.mkdir()
    inv.write_text(INVENTORY)
    inv.chmod(0o664)
    msg = refused(inv)
    assert f"{inv}: refusing to read this inventory: it is writable by group (mode 0664)" in msg
    assert f"fix: `chmod go-w {inv}`" in msg
    inv.chmod(0o644)
    inv.parent.chmod(0o757)
    msg = refused(inv)
    assert f"the directory {inv.parent} (above it) is writable by others (mode 0757)" in msg
    assert f"chmod go-w {inv.parent}" in msg
    inv.parent.chmod(0o1777)  # sticky: others cannot replace what we own in it
    check_trusted(inv, "inventory")


def test_a_file_deep_in_an_inventory_directory_is_refused(tmp_path: Path) -> None:
    inv = tmp_path / "inventory"
    (inv / "group_vars" / "web").mkdir(parents=True)
    (inv / "hosts.yml").write_text(INVENTORY)
    gv = inv / "group_vars" / "web" / "main.yml"
    gv.write_text("x: 1\n")
    check_trusted_tree(inv, "inventory")
    gv.chmod(0o666)
    msg = refused(inv)
    assert str(gv) in msg and "group and others (mode 0666)" in msg and "chmod go-w" in msg


def test_a_file_owned_by_another_user_is_refused(tmp_path: Path) -> None:
    script = tmp_path / "lb.sh"
    script.write_text("#!/bin/sh\n")
    os.chown(script, 65534, 65534)  # nobody
    msg = refused(script, "router script")
    assert "is owned by nobody, not by root" in msg and "chown root" in msg, msg


def _setup(tmp_path: Path) -> Path:
    (tmp_path / "hosts.yml").write_text(INVENTORY)
    (tmp_path / "known_hosts").write_text("")
    script = tmp_path / "lb.sh"
    script.write_text("#!/bin/sh\necho '{\"live\": \"blue\"}'\n")
    script.chmod(0o755)
    config = tmp_path / "bluegreen.yml"
    config.write_text(CONFIG.format(script=script))
    return config


def _cli(config: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "orchestrator", "-c", str(config), *args],
                          capture_output=True, text=True, timeout=120, check=False)


def test_the_cli_refuses_a_writable_config_inventory_or_router_script(tmp_path: Path) -> None:
    config = _setup(tmp_path)
    config.chmod(0o664)
    proc = _cli(config, "plan", "web")
    assert proc.returncode == 2, proc.stderr
    assert f"{config}: refusing to read this config file" in proc.stderr
    assert f"chmod go-w {config}" in proc.stderr
    config.chmod(0o644)
    inv = tmp_path / "hosts.yml"
    inv.chmod(0o646)
    proc = _cli(config, "plan", "web")
    assert proc.returncode == 2 and f"chmod go-w {inv}" in proc.stderr, proc.stderr
    inv.chmod(0o644)
    gv = tmp_path / "group_vars"
    gv.mkdir(mode=0o775)
    gv.chmod(0o775)
    proc = _cli(config, "plan", "web")
    assert proc.returncode == 2 and f"chmod go-w {gv}" in proc.stderr, proc.stderr
    gv.rmdir()
    (tmp_path / "lb.sh").chmod(0o775)
    proc = _cli(config, "status", "web")
    assert proc.returncode == 2, proc.stderr
    assert "router script" in proc.stderr and "chmod go-w" in proc.stderr, proc.stderr


def test_a_writable_playbook_is_refused(tmp_path: Path) -> None:
    from orchestrator.config.loaded import load_config

    config = _setup(tmp_path)
    playbook = tmp_path / "patch.yml"
    playbook.write_text("- hosts: all\n  tasks: []\n")
    playbook.chmod(0o666)
    with pytest.raises(BadInput) as info:
        load_config(config).resolve_playbook("patch.yml")
    assert "playbook" in str(info.value) and f"chmod go-w {playbook}" in str(info.value)


def test_a_device_is_left_to_the_reader() -> None:
    """/dev/zero is 0666 but no file: the reader says "not a regular file", not chmod."""
    check_trusted(Path("/dev/zero"), "config file")
