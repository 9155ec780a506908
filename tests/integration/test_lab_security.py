"""The lab's bookworm-security suite (issue 12): the real security updates Debian has for
the lab image, served by the lab repository; a campaign or rollout with
`security_updates: true` installs them on the standby, and the gate proves that nothing
still runs the replaced libraries: sshd is restarted (its listener only, so the management
connection stays up), systemd re-executes itself, dbus and logind are restarted."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from orchestrator.advisories import versions
from orchestrator.lab.lab import Lab
from tests.support.cli import bluegreen_json
from tests.support.lab import hosts_of, no_steps_config

pytestmark = pytest.mark.lab


def installed_versions(lab: Lab, host: str, names: list[str]) -> dict[str, str]:
    out = lab.exec(
        host, ["dpkg-query", "-W", "-f=${Package} ${Version}\\n", *names], check=False
    ).stdout
    return dict(line.split() for line in out.splitlines() if line.strip())


def test_the_suite_holds_the_images_pending_security_updates(lab: Lab) -> None:
    updates = {u.name: u for u in lab.security_updates()}
    assert "libssl3" in updates, (
        "Debian's security suite has no libssl3 newer than the lab image: the lab's "
        f"pending updates are {sorted(updates)}"
    )
    host = hosts_of(lab, "web", "blue")[0]
    have = installed_versions(lab, host, sorted(updates))
    for name, update in updates.items():
        assert versions.compare(update.candidate, update.installed or "0") > 0, update
        if update.installed is not None:
            assert have[name] == update.installed, (name, have.get(name), update)
    index = (lab.paths.repo / "bookworm-security" / "Packages").read_text()
    served = set()
    for stanza in index.split("\n\n"):
        fields = dict(line.split(": ", 1) for line in stanza.splitlines() if ": " in line)
        served.add((fields.get("Package"), fields.get("Version")))
    assert {(n, u.candidate) for n, u in updates.items()} <= served
    sources = lab.exec(host, ["cat", "/etc/apt/sources.list.d/bluegreen-lab.list"]).stdout
    assert "http://bluegreen-repo:8099/bookworm-security ./" in sources
    release = (lab.paths.repo / "bookworm-security" / "Release").read_text()
    assert "Suite: bookworm-security" in release


def _main_pid(lab: Lab, host: str, unit: str) -> int:
    out = lab.exec(host, ["systemctl", "show", "-p", "MainPID", "--value", unit]).stdout
    return int(out.strip())


@pytest.mark.destructive
def test_security_updates_on_the_standby_and_the_needrestart_lesson(
    fresh_lab: Lab, tmp_path: Path
) -> None:
    lab = fresh_lab
    updates = {u.name: u.candidate for u in lab.security_updates()}
    doc = yaml.safe_load(no_steps_config(lab).read_text())
    doc["services"]["web"]["patch"] = {"security_updates": True}
    doc["services"]["web"]["fixed_versions"] = {}
    cfg = tmp_path / "bluegreen.yml"
    cfg.write_text(yaml.safe_dump(doc))
    green, blue = hosts_of(lab, "web", "green"), hosts_of(lab, "web", "blue")
    sshd_before = {h: _main_pid(lab, h, "ssh.service") for h in green}
    blue_before = {h: installed_versions(lab, h, sorted(updates)) for h in blue}

    code, out = bluegreen_json(cfg, "rollout", "web", "--yes", timeout=900)

    assert code == 0, out
    patch = out["steps"]["patch"]
    for host in green:
        assert installed_versions(lab, host, sorted(updates)) == updates
        restarted = patch["hosts"][host]["restarted"]
        # sshd mapped the old libcrypto: restarted (listener only: this run's own SSH
        # connection lived on), systemd re-executed, dbus and logind restarted
        for unit in ("ssh.service", "init.scope", "dbus.service", "systemd-logind.service"):
            assert unit in restarted, (host, restarted)
        assert _main_pid(lab, host, "ssh.service") != sshd_before[host]
        maps = lab.exec(host, ["sh", "-c", "grep -l '(deleted)' /proc/[0-9]*/maps || true"])
        assert maps.stdout.strip() == "", maps.stdout  # nothing runs replaced code
    verify = " ".join(r["check"] for r in out["steps"]["verify"]["results"])
    assert "stale-processes" in verify
    for host in blue:  # the live side was never touched
        assert installed_versions(lab, host, sorted(updates)) == blue_before[host]
