"""The patch step tells the truth (issue 16), on the real lab.

- the apt refresh is real whenever a requested version is not in the package lists, even
  when something else just touched the lists directory (the `cache_valid_time` trap);
- `patch_side` reports what changed, read from dpkg on each host before and after;
- a playbook that changes nothing gets a warning, and the side's level is what is
  installed, not what was asked (also through `bluegreen rollout`, whose gate then fails).
"""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from orchestrator.config.loaded import LoadedConfig, load_config
from orchestrator.config.models import PackageSpec
from orchestrator.lab.lab import Lab
from orchestrator.patching import patch_side
from tests.support.cli import bluegreen, bluegreen_json
from tests.support.lab import VULNERABLE, no_steps_config

pytestmark = pytest.mark.lab

GREEN = ["web-green-1", "web-green-2"]
OLD_SSL, NEW_SSL = "3.0.11-1", "3.0.15-1"
FIXED_SSL = [PackageSpec(name="demo-openssl", version=NEW_SSL)]

# What a third-party role does before ours: touches the lists directory without fetching
# our repository (here: our repository's lists are gone, the directory's mtime is now).
FORGET_REPO_AND_TOUCH = "rm -f /var/lib/apt/lists/*bluegreen-repo* && touch /var/lib/apt/lists"

# A published-style upgrade role, run unmodified: it trusts its own cache setting, so with
# lists "fresh" by mtime it does not refresh, finds nothing to upgrade, and succeeds.
LAZY_UPGRADE_PLAYBOOK = """
- hosts: "{{ target }}"
  gather_facts: false
  tasks:
    - name: upgrade everything (cache valid for an hour)
      ansible.builtin.apt:
        upgrade: dist
        update_cache: true
        cache_valid_time: 3600
"""


def sh(lab: Lab, host: str, script: str) -> str:
    return lab.exec(host, ["sh", "-c", script]).stdout


def installed(lab: Lab, host: str, package: str) -> str:
    return sh(lab, host, f"dpkg-query -W -f='${{Version}}' {package}").strip()


@pytest.fixture
def config(lab: Lab) -> LoadedConfig:
    return load_config(no_steps_config(lab))


def test_touched_lists_without_the_version_still_refresh(lab: Lab, config: LoadedConfig) -> None:
    lab.reset(GREEN)
    for host in GREEN:
        sh(lab, host, FORGET_REPO_AND_TOUCH)
        assert "bluegreen-repo" not in sh(lab, host, "ls /var/lib/apt/lists")

    patched = patch_side(config, "web", "green", FIXED_SSL)

    assert patched.ok, patched.result.message
    for host in GREEN:
        assert installed(lab, host, "demo-openssl") == NEW_SSL
        assert "bluegreen-repo" in sh(lab, host, "ls /var/lib/apt/lists")  # a real refresh


def test_reports_what_changed_from_dpkg_and_the_installed_level(
    lab: Lab, config: LoadedConfig
) -> None:
    lab.reset(GREEN)
    patched = patch_side(config, "web", "green", FIXED_SSL)

    assert patched.ok, patched.result.message
    assert patched.changes.summary() == "1 package changed on 2 hosts"
    assert patched.changes.lines() == [f"demo-openssl {OLD_SSL} -> {NEW_SSL}"]
    assert patched.changes.unread == {}
    assert patched.level == f"demo-openssl={NEW_SSL}"
    assert patched.warnings == []
    for host in GREEN:
        assert patched.result.hosts[host].restarted == ["demo-web.service"]


def test_playbook_that_changes_nothing_is_reported_and_the_gate_fails(
    fresh_lab: Lab, tmp_path: Path
) -> None:
    lab = fresh_lab
    for host in GREEN:
        sh(lab, host, FORGET_REPO_AND_TOUCH)
    playbook = tmp_path / "lazy-upgrade.yml"
    playbook.write_text(LAZY_UPGRADE_PLAYBOOK)
    doc = yaml.safe_load(no_steps_config(lab).read_text())
    doc["services"]["web"]["patch"]["playbook"] = str(playbook)
    cfg = tmp_path / "bluegreen.yml"
    cfg.write_text(yaml.safe_dump(doc))

    patched = patch_side(load_config(cfg), "web", "green", None)

    assert patched.ok, patched.result.message  # Ansible says: all fine
    assert patched.changes.summary() == "0 packages changed on 0 hosts"
    assert patched.warnings[0].startswith("the playbook changed no package on web-green-1")
    assert patched.level == f"demo-openssl={OLD_SSL},demo-web=1.0.0"  # installed, not asked

    proc = bluegreen(cfg, "rollout", "web", "--yes")
    assert proc.returncode == 3, proc.stderr  # the gate sees the vulnerable version
    said = " ".join(proc.stderr.split())  # the terminal renderer wraps lines
    assert "warning: the playbook changed no package on web-green-1, web-green-2" in said
    assert f"patched green (demo-openssl={OLD_SSL},demo-web=1.0.0)" in said
    assert "0 packages changed on 0 hosts" in said
    code, st = bluegreen_json(cfg, "status", "web")
    assert code == 0, st
    assert st["live"] == "blue"
    assert st["sides"]["green"]["patch_level"] == f"demo-openssl={OLD_SSL},demo-web=1.0.0"
    for host in GREEN:
        assert {p: installed(lab, host, p) for p in VULNERABLE} == VULNERABLE
