"""patch_hosts() and playbooks/patch.yml against the real lab (no mocks).

Every test that changes hosts starts from fresh hosts (`Lab().reset`).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from orchestrator.config.loaded import LoadedConfig, load_config
from orchestrator.config.models import PackageSpec
from orchestrator.lab.lab import Lab
from orchestrator.patching import PatchProgress, patch_hosts

pytestmark = pytest.mark.lab

ROOT = Path(__file__).resolve().parents[2]
GREEN = ["web-green-1", "web-green-2"]
BLUE = ["web-blue-1", "web-blue-2"]
OLD_SSL, NEW_SSL = "3.0.11-1", "3.0.15-1"
FIXED_SSL = [PackageSpec(name="demo-openssl", version=NEW_SSL)]


@pytest.fixture
def config(lab: Lab) -> LoadedConfig:
    return load_config(lab.paths.config)


def installed(lab: Lab, host: str, package: str) -> str:
    out = lab.exec(host, ["dpkg-query", "-W", "-f=${Version}", package]).stdout
    return out.strip()


def demo_web_maps_deleted(lab: Lab, host: str) -> bool:
    script = 'grep -c "(deleted)" /proc/$(systemctl show -p MainPID --value demo-web)/maps'
    out = lab.exec(host, ["sh", "-c", script], check=False).stdout.strip()
    return out != "0"


def test_patch_green_openssl_restarts_demo_web_and_leaves_blue(
    lab: Lab, config: LoadedConfig
) -> None:
    lab.reset(GREEN)
    blue_before = {h: installed(lab, h, "demo-openssl") for h in BLUE}
    events: list[PatchProgress] = []

    started = time.monotonic()
    result = patch_hosts(config, "web", "green", FIXED_SSL, on_event=events.append)
    elapsed = time.monotonic() - started
    print(f"2-host patch took {elapsed:.1f}s (result.seconds={result.seconds})")

    assert result.ok, result.message
    assert result.status == "successful" and result.rc == 0
    assert sorted(result.hosts) == GREEN
    for host in GREEN:
        h = result.hosts[host]
        assert h.ok and h.changed and h.failed_task is None and not h.unreachable
        assert h.versions == {"demo-openssl": NEW_SSL}
        assert "demo-web.service" in h.restarted
        assert installed(lab, host, "demo-openssl") == NEW_SSL
        assert installed(lab, host, "demo-web") == "1.0.0"  # only what was asked
        assert not demo_web_maps_deleted(lab, host)
    # the live side is never touched
    assert blue_before == {h: OLD_SSL for h in BLUE}
    assert {h: installed(lab, h, "demo-openssl") for h in BLUE} == blue_before
    # progress: task starts and per-host results, with the playbook's stable task names
    assert any(e.host is None and e.status == "started" for e in events)
    assert any(
        e.host == "web-green-1"
        and e.task == "bluegreen: patch (apt)"
        and e.status == "changed"
        for e in events
    )


def test_check_mode_reports_changes_and_changes_nothing(lab: Lab, config: LoadedConfig) -> None:
    lab.reset(GREEN)
    result = patch_hosts(config, "web", "green", FIXED_SSL, check_mode=True)

    assert result.ok, result.message
    assert result.check_mode
    for host in GREEN:
        h = result.hosts[host]
        change = h.would_change["demo-openssl"]
        assert (change.current, change.new) == (OLD_SSL, NEW_SSL)
        assert h.restarted == []
        assert installed(lab, host, "demo-openssl") == OLD_SSL
        assert demo_web_maps_deleted(lab, host) is False


def test_unreachable_host_fails_and_is_named(lab: Lab, config: LoadedConfig) -> None:
    lab.reset(GREEN)
    lab.fault("web-green-2", "unreachable")
    try:
        result = patch_hosts(config, "web", "green", FIXED_SSL)
    finally:
        lab.heal("web-green-2")

    assert not result.ok
    bad = result.hosts["web-green-2"]
    assert bad.unreachable and not bad.ok
    assert bad.message and "web-green-2" in bad.message
    assert "web-green-2" in (result.message or "")
    assert installed(lab, "web-green-2", "demo-openssl") == OLD_SSL


def test_changed_host_key_is_refused_and_host_not_patched(
    lab: Lab, config: LoadedConfig, tmp_path: Path
) -> None:
    lab.reset(GREEN)
    # a known_hosts where web-green-1 has some other key, and a config copy that uses it
    subprocess.run(
        ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(tmp_path / "other")],
        check=True,
    )
    other_key = " ".join((tmp_path / "other.pub").read_text().split()[:2])
    lines = []
    for line in config.known_hosts_path.read_text().splitlines():
        names = line.split(" ", 1)[0].split(",")
        lines.append(f"{line.split(' ', 1)[0]} {other_key}" if "web-green-1" in names else line)
    tampered = tmp_path / "known_hosts"
    tampered.write_text("\n".join(lines) + "\n")
    data = yaml.safe_load(lab.paths.config.read_text())
    data["ssh"]["known_hosts"] = str(tampered)
    (tmp_path / "bluegreen.yml").write_text(yaml.safe_dump(data))
    tampered_config = load_config(tmp_path / "bluegreen.yml")

    result = patch_hosts(tampered_config, "web", "green", FIXED_SSL)

    assert not result.ok
    h = result.hosts["web-green-1"]
    assert not h.ok and h.unreachable
    assert h.message and "web-green-1" in h.message
    assert "host key" in h.message.lower() or "identification has changed" in h.message.lower()
    assert installed(lab, "web-green-1", "demo-openssl") == OLD_SSL


def test_nonexistent_version_fails_naming_host_and_task(lab: Lab, config: LoadedConfig) -> None:
    lab.reset(GREEN)
    result = patch_hosts(
        config, "web", "green", [PackageSpec(name="demo-openssl", version="9.9.9-1")]
    )

    assert not result.ok
    assert result.status == "failed"
    h = result.hosts["web-green-1"]  # serial 50%: the first batch fails, the play stops
    assert not h.ok and not h.unreachable
    assert h.failed_task == "bluegreen: patch (apt)"
    assert h.message is not None
    assert "web-green-1" in h.message
    assert "bluegreen: patch (apt)" in h.message
    assert "not available from any configured apt source" in h.message
    assert "9.9.9-1" in h.message
    assert not result.hosts["web-green-2"].ok
    for host in GREEN:
        assert installed(lab, host, "demo-openssl") == OLD_SSL


def test_cancel_stops_the_run(lab: Lab, config: LoadedConfig) -> None:
    result = patch_hosts(config, "web", "green", FIXED_SSL, check_mode=True, cancel=lambda: True)

    assert not result.ok
    assert result.rc == 254
    assert result.status == "canceled"


def test_playbook_runs_without_bluegreen(lab: Lab) -> None:
    lab.reset(GREEN)
    env = dict(os.environ)
    env["PATH"] = f"{Path(sys.prefix) / 'bin'}{os.pathsep}{env.get('PATH', '')}"
    env["ANSIBLE_HOST_KEY_CHECKING"] = "True"
    env["ANSIBLE_NOCOLOR"] = "1"
    env["ANSIBLE_RETRY_FILES_ENABLED"] = "False"
    proc = subprocess.run(
        [
            str(Path(sys.prefix) / "bin" / "ansible-playbook"),
            "-i",
            str(lab.paths.inventory),
            str(ROOT / "playbooks" / "patch.yml"),
            "-e",
            "target=web_green",
            "-e",
            json.dumps({"packages": [f"demo-openssl={NEW_SSL}"]}),
            "-v",  # shows the task's report lines
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]
    assert "RESTARTED demo-web.service" in proc.stdout
    assert f"BLUEGREEN-CHANGED demo-openssl {OLD_SSL} {NEW_SSL}" in proc.stdout
    for host in GREEN:
        assert installed(lab, host, "demo-openssl") == NEW_SSL
    for host in BLUE:
        assert installed(lab, host, "demo-openssl") == OLD_SSL
