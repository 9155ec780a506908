"""The machine bluegreen runs on and colleagues' files, on the lab (issue 21, items 10, 14).

- Every child gets the minimal environment: with PGPASSWORD and the dashboard token in
  bluegreen's environment, the `artifacts/*/command` file ansible-runner writes during a real
  patch, and what a command-router script sees, hold neither.
- A run directory left by a killed process (kill -9 skips every cleanup) is removed by the
  next patch.
- `restart_skip` from the inventory is quoted inside the playbook's shell: an injection in it
  runs nothing on the host, and the restart step still works (demo-web is restarted).
"""

from __future__ import annotations

import os
import subprocess
import threading
from pathlib import Path

import pytest
import yaml

from orchestrator.config.loaded import load_config
from orchestrator.config.models import PackageSpec
from orchestrator.lab.lab import Lab
from orchestrator.patching import patch_side
from tests.support.cli import bluegreen

pytestmark = pytest.mark.lab

GREEN = ["web-green-1", "web-green-2"]
FIXED_SSL = [PackageSpec(name="demo-openssl", version="3.0.15-1")]
SECRETS = {"PGPASSWORD": "s3cret-pg-77e1", "BLUEGREEN_DASHBOARD_TOKEN": "s3cret-dash-c41a"}
PWNED = "/tmp/pwned-by-restart-skip"
DUMP_ENV_ROUTER = """#!/bin/sh
env > {dump}
case "$1" in
  live) echo '{{"live": "blue"}}' ;;
  health) echo '{{"servers": [{{"name": "x", "status": "UP"}}]}}' ;;
  counters) echo '{{"responses": 1, "errors_5xx": 0}}' ;;
  *) echo '{{"ok": true}}' ;;
esac
"""


def _dead_pid() -> int:
    proc = subprocess.Popen(["true"])
    proc.wait()
    return proc.pid


def _watch_command_files(seen: dict[Path, str], stop: threading.Event) -> None:
    """Read every artifacts/*/command of this process's run directories while they exist."""
    pattern = f"bluegreen-patch-{os.getpid()}-*/ansible-*/artifacts/*/command"
    while not stop.is_set():
        for found in Path("/tmp").glob(pattern):
            try:
                seen.setdefault(found, found.read_text())
            except OSError:
                pass
        stop.wait(0.02)


def test_children_get_no_secret_stale_run_dirs_go_and_restart_skip_is_quoted(
    lab: Lab, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    lab.reset(GREEN)
    for name, value in SECRETS.items():
        monkeypatch.setenv(name, value)
    # an inventory beside group_vars that try to inject a command through restart_skip
    inventory = tmp_path / "hosts.yml"
    inventory.write_text(lab.paths.inventory.read_text())
    (tmp_path / "group_vars").mkdir()
    (tmp_path / "group_vars" / "all.yml").write_text(
        yaml.safe_dump({"restart_skip": f"x'; touch {PWNED}; '"}))
    doc = yaml.safe_load(lab.paths.config.read_text())
    doc["inventory"] = str(inventory)
    config_file = tmp_path / "bluegreen.yml"
    config_file.write_text(yaml.safe_dump(doc))
    # what a kill -9 of an earlier run left: its run directory with the runner's artifacts
    stale = Path("/tmp") / f"bluegreen-patch-{_dead_pid()}-stale000"
    (stale / "ansible-x" / "artifacts" / "id").mkdir(parents=True)
    (stale / "ansible-x" / "artifacts" / "id" / "command").write_text('{"env": {}}')
    seen: dict[Path, str] = {}
    stop = threading.Event()
    watcher = threading.Thread(target=_watch_command_files, args=(seen, stop), daemon=True)
    watcher.start()
    try:
        patched = patch_side(load_config(config_file), "web", "green", FIXED_SSL)
    finally:
        stop.set()
        watcher.join(timeout=5)
        import shutil

        shutil.rmtree(stale, ignore_errors=True)
    assert patched.ok, patched.result.message
    # 1. the runner's command file existed during the run and holds no secret
    assert seen, "no artifacts/*/command seen during the run"
    for path, text in seen.items():
        for value in SECRETS.values():
            assert value not in text, (path, text[:500])
        assert "PGPASSWORD" not in text and "BLUEGREEN_DASHBOARD_TOKEN" not in text
    # 2. the stale run directory was removed by this patch, before it ran
    assert not any(p.is_relative_to(stale) for p in seen)
    assert not stale.exists()
    # 3. restart_skip is quoted: the step ran (demo-web restarted), the injection did not
    for host in GREEN:
        assert patched.result.hosts[host].restarted == ["demo-web.service"], host
        assert lab.exec(host, ["sh", "-c", f"test -e {PWNED} && echo yes || echo no"]
                        ).stdout.strip() == "no", host
    # 4. a command router's script sees no secret either
    dump = tmp_path / "router-env.txt"
    script = tmp_path / "lb-dump-env"
    script.write_text(DUMP_ENV_ROUTER.format(dump=dump))
    script.chmod(0o755)
    doc["router"] = {"kind": "command", "script": str(script), "counters": True}
    config_file.write_text(yaml.safe_dump(doc))
    proc = bluegreen(config_file, "status", "web", env=SECRETS)
    assert dump.exists(), proc.stderr
    text = dump.read_text()
    assert "BLUEGREEN_ACTION=" in text
    for name, value in SECRETS.items():
        assert name not in text and value not in text, text
