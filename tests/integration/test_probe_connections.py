"""One probe run, one strict SSH connection per host: counted by the lab hosts' own sshd.

A verification gate runs built-in checks, an in-process user suite and drift at the same
time; each host must see exactly one accepted SSH session for it, closed when it ends. A
connection that dies during the run gives errors with their reason, never a pass, and is
not silently reopened.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from orchestrator.config.loaded import load_config
from orchestrator.inventory import load_fleet
from orchestrator.lab.lab import Lab
from orchestrator.probes import ConnectionPool, ProbeReport, ProbeTarget, parse_checks, run_checks
from orchestrator.probes.drift import Fingerprint, read_fingerprints
from orchestrator.probes.gate import targets_for
from tests.support.cli import bluegreen_json

pytestmark = [pytest.mark.lab, pytest.mark.destructive]

ROOT = Path(__file__).resolve().parents[2]
SUITE = ROOT / "tests" / "data" / "suites" / "test_thirdparty_style.py"
# fixtures (its own and a conftest's), parametrize, marks, a class: pytest itself runs it
FIXTURES_SUITE = ROOT / "tests" / "data" / "suites" / "fixtures_style" / "test_fixtures_style.py"
GREEN = ["web-green-1", "web-green-2"]
BLUE = ["web-blue-1", "web-blue-2"]


@pytest.fixture(scope="module")
def web(lab: Lab) -> Iterator[Lab]:
    """web's hosts as they came from the image (both sides: drift compares them)."""
    lab.reset([*GREEN, *BLUE])
    yield lab


def write_config(lab: Lab, tmp_path: Path) -> Path:
    """The lab config, own state store; web: health + stale-processes + a suite + drift."""
    doc = yaml.safe_load(lab.paths.config.read_text())
    doc["state"] = {"path": "state/state.db"}
    web = doc["services"]["web"]
    web["fixed_versions"] = {}
    web["checks"] = [{"kind": "service", "name": "demo-web"}]
    web["suites"] = [str(SUITE), str(FIXTURES_SUITE)]
    web["drift"] = {"mode": "fail"}
    path = tmp_path / "bluegreen.yml"
    path.write_text(yaml.safe_dump(doc))
    return path


def sshd_log(lab: Lab, host: str) -> tuple[int, int]:
    """(accepted sessions, closed sessions) in the host's sshd journal so far."""
    out = lab.exec(host, ["journalctl", "-q", "-u", "ssh", "--no-pager", "-o", "cat"]).stdout
    lines = out.splitlines()
    accepted = sum("Accepted publickey for root" in line for line in lines)
    closed = sum("pam_unix(sshd:session): session closed for user root" in line for line in lines)
    return accepted, closed


def settled_logs(lab: Lab, hosts: list[str]) -> dict[str, tuple[int, int]]:
    """The journals once they stop changing (journald writes a moment after sshd logs)."""
    last: dict[str, tuple[int, int]] = {}
    for _ in range(20):
        now = {h: sshd_log(lab, h) for h in hosts}
        if now == last:
            return now
        last = now
        time.sleep(0.5)
    return last


def test_verify_uses_one_connection_per_host(web: Lab, tmp_path: Path) -> None:
    lab = web
    cfg = write_config(lab, tmp_path)
    hosts = [*GREEN, *BLUE, "api-green-1"]
    before = settled_logs(lab, hosts)
    code, doc = bluegreen_json(cfg, "verify", "web", "--side", "green")
    assert code == 0, doc
    checks = {r["check"] for r in doc["results"] if r["host"] == "web-green-1"}
    assert {"drift", "service:demo-web", "stale-processes"} <= checks, checks
    assert any(c.startswith(f"suite:{SUITE.name}::") for c in checks), checks
    assert {
        f"suite:{FIXTURES_SUITE.name}::{t}"
        for t in (
            "test_debian_12",
            "test_installed[openssh-server]",
            "test_installed[sudo]",
            "test_listens[22]",
            "test_named_like_the_inventory",
            "test_root_login_without_password_only",
            "TestDemoWeb::test_running",
            "TestDemoWeb::test_no_telnet",
        )
    } <= checks, checks
    after = settled_logs(lab, hosts)
    new = {h: (after[h][0] - before[h][0], after[h][1] - before[h][1]) for h in hosts}
    # green: checks + both suites (pytest in this process) + drift over one session; blue:
    # drift (the other side) only.
    # Every session was closed again before the command returned.
    assert new == {**{h: (1, 1) for h in [*GREEN, *BLUE]}, "api-green-1": (0, 0)}, new


def green_targets(cfg: Path) -> list[ProbeTarget]:
    config = load_config(cfg)
    return targets_for(config, load_fleet(config).service("web").side("green"))


def session_pids(lab: Lab, host: str, local_port: int) -> list[str]:
    """The sshd processes serving our connection from `local_port` (monitor and child)."""
    out = lab.exec(host, ["ss", "-Htnp", "state", "established", "sport", "= :22"]).stdout
    for line in out.splitlines():
        if f":{local_port} " in line:
            pids = re.findall(r"pid=(\d+)", line)
            if pids:
                return pids
    raise AssertionError(f"no sshd session for port {local_port} on {host}: {out}")


# Two checks: testinfra's facts are then read up front (on Python 3.11 a host stuck inside
# testinfra's own `sysinfo` would hold a lock every host's `sysinfo` needs).
CHECKS = [{"kind": "service", "name": "demo-web"}, {"kind": "stale-processes"}]


def probe(
    pool: ConnectionPool, targets: list[ProbeTarget], deadline_s: float
) -> tuple[ProbeReport, dict[str, Fingerprint], dict[str, str]]:
    """Checks, then drift, over the pool's connections."""
    report = run_checks(targets, parse_checks(CHECKS), deadline_s, pool=pool)
    fps, errors = read_fingerprints(targets, deadline_s=deadline_s, pool=pool)
    return report, fps, errors


def assert_only_green_1_failed(
    got: tuple[ProbeReport, dict[str, Fingerprint], dict[str, str]], reasons: tuple[str, ...]
) -> None:
    report, fps, errors = got
    mine = [r for r in report.results if r.host == "web-green-1"]
    assert mine and all(r.status == "error" for r in mine), mine
    assert all(any(w in r.evidence for w in reasons) for r in mine), mine
    assert any(w in errors.get("web-green-1", "") for w in reasons), errors
    assert all(r.status == "pass" for r in report.results if r.host == "web-green-2"), report
    assert sorted(fps) == ["web-green-2"], errors


def test_a_connection_that_dies_mid_run_fails_with_its_reason(web: Lab, tmp_path: Path) -> None:
    targets = green_targets(write_config(web, tmp_path))
    with ConnectionPool() as pool:
        assert probe(pool, targets, 30)[0].ok
        conn = pool.get(targets[0])
        transport = conn._client.get_transport() if conn._client else None
        assert transport is not None
        port = transport.sock.getsockname()[1]  # type: ignore[union-attr]
        # The session of this very connection ends on the host (as when sshd dies).
        web.exec("web-green-1", ["kill", "-9", *session_pids(web, "web-green-1", port)])
        got = probe(pool, targets, 30)
        assert pool.opened == 2  # the dead one was not reopened behind the run's back
    assert_only_green_1_failed(got, ("was lost", "ssh error", "no exit status"))


def test_a_host_unreachable_mid_run_fails_within_the_deadline(web: Lab, tmp_path: Path) -> None:
    targets = green_targets(write_config(web, tmp_path))
    with ConnectionPool() as pool:
        assert probe(pool, targets, 30)[0].ok
        web.fault("web-green-1", "unreachable")
        try:
            started = time.monotonic()
            got = probe(pool, targets, 3)
            took = time.monotonic() - started
        finally:
            web.heal("web-green-1")
        assert pool.opened == 2
    assert took < 12, took
    assert_only_green_1_failed(got, ("deadline", "timed out"))


def test_sessions_are_gone_after_the_run(web: Lab, tmp_path: Path) -> None:
    """No sshd session process of ours is left on a host once the run has returned."""
    lab = web
    cfg = write_config(lab, tmp_path)
    code, doc = bluegreen_json(cfg, "drift", "web", "--side", "green")
    assert code == 0, doc
    for host in [*GREEN, *BLUE]:
        for _ in range(20):
            out = lab.exec(host, ["ss", "-Htn", "state", "established", "sport", "= :22"]).stdout
            if not out.strip():
                break
            time.sleep(0.25)
        assert not out.strip(), (host, out)
