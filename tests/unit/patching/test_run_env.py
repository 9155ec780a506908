"""The environment of a patch run (issue 21, item 10): ansible-runner writes the environment it
is given to `artifacts/<ident>/command`, so it is given only the minimal one; run directories
left by a killed process are removed (masters closed) before the next run."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from orchestrator.patching import ssh
from orchestrator.patching.runner import _start, runner_env
from orchestrator.processes import child_env

PLAY = """\
- hosts: localhost
  gather_facts: false
  tasks:
    - ansible.builtin.command: env
      register: seen
    - ansible.builtin.copy: {content: "{{ seen.stdout }}", dest: "{{ out }}"}
"""


def test_runner_env_keeps_ours_and_the_runners_own_not_the_inherited() -> None:
    inherited = {"PGPASSWORD": "s3cret", "HOME": "/h", "ANSIBLE_CALLBACK_PLUGINS": "/a"}
    prepared = {**inherited, "HOME": "/h", "ANSIBLE_STDOUT_CALLBACK": "awx_display",
                "ANSIBLE_CALLBACK_PLUGINS": "/a:/runner/cb", "RUNNER_OMIT_EVENTS": "False"}
    env = runner_env(prepared, inherited, {"HOME": "/h", "ANSIBLE_STDOUT_CALLBACK": "default"})
    assert env == {"HOME": "/h", "ANSIBLE_STDOUT_CALLBACK": "awx_display",
                   "ANSIBLE_CALLBACK_PLUGINS": "/a:/runner/cb", "RUNNER_OMIT_EVENTS": "False"}


def test_a_real_run_writes_and_passes_no_secret(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PGPASSWORD", "s3cret-pg-4411")
    monkeypatch.setenv("BLUEGREEN_DASHBOARD_TOKEN", "s3cret-dash-9c2d")
    playbook = tmp_path / "play.yml"
    playbook.write_text(PLAY)
    out = tmp_path / "env-seen"
    data = tmp_path / "run"
    data.mkdir()
    envvars = child_env({"ANSIBLE_LOCAL_TEMP": str(tmp_path / "tmp"),
                         "ANSIBLE_PYTHON_INTERPRETER": sys.executable})
    runner = _start(private_data_dir=str(data), playbook=str(playbook),
                    inventory="localhost,", extravars={"out": str(out)}, envvars=envvars,
                    suppress_env_files=True, quiet=True, timeout=120,
                    cancel_callback=lambda: False, settings={"suppress_ansible_output": True})
    assert runner.status == "successful", runner.stdout.read()
    (command,) = data.glob("artifacts/*/command")
    written = command.read_text()
    assert "s3cret" not in written, written
    assert json.loads(written)["env"]["ANSIBLE_STDOUT_CALLBACK"] == "awx_display"
    seen = out.read_text()
    assert "s3cret" not in seen and "PGPASSWORD" not in seen, seen
    assert f"PATH={Path(sys.prefix) / 'bin'}:" in seen


def test_stale_run_dirs_are_removed_live_ones_kept(tmp_path: Path) -> None:
    dead = subprocess.Popen(["true"])
    dead.wait()
    stale = tmp_path / f"bluegreen-patch-{dead.pid}-abcd1234"
    (stale / "ansible-x" / "artifacts" / "id").mkdir(parents=True)
    (stale / "ansible-x" / "artifacts" / "id" / "command").write_text('{"env": {}}')
    (stale / "cp").mkdir()
    live = tmp_path / f"bluegreen-patch-{os.getpid()}-efgh5678"
    live.mkdir()
    other = tmp_path / "bluegreen-patch-notapid"
    other.mkdir()
    link = tmp_path / f"bluegreen-patch-{dead.pid}-symlink0"
    link.symlink_to(live)
    assert ssh.remove_stale_run_dirs(tmp_path) == [stale]
    assert not stale.exists() and live.exists() and other.exists() and link.is_symlink()


def test_control_dir_names_its_owner_and_cleans_first(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    dead = subprocess.Popen(["true"])
    dead.wait()
    stale = tmp_path / f"bluegreen-patch-{dead.pid}-abcd1234"
    stale.mkdir()
    monkeypatch.setattr(ssh, "_run_base", lambda: tmp_path)
    made = ssh.control_dir()
    assert made.name.startswith(f"bluegreen-patch-{os.getpid()}-")
    assert oct(made.stat().st_mode & 0o777) == "0o700"
    assert not stale.exists()
