"""Verification probes on real lab hosts: every check passes for real and fails for real.

Each test works on the standby side (web green), uses a config of its own (its own state
store in tmp_path), and puts back every host it changed (`Lab.reset`), also on failure.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from orchestrator.config.loaded import load_config
from orchestrator.inventory import load_fleet
from orchestrator.lab.lab import Lab
from orchestrator.probes import parse_checks, run_checks
from orchestrator.probes.gate import targets_for
from orchestrator.rollout.steps.verify import verify_side
from orchestrator.state.models import AuditEntryInput
from orchestrator.testing import patched
from orchestrator.traffic import open_store
from tests.support.cli import bluegreen, bluegreen_json

pytestmark = [pytest.mark.lab, pytest.mark.destructive]

ROOT = Path(__file__).resolve().parents[2]
SUITE = ROOT / "tests" / "data" / "suites" / "test_thirdparty_style.py"
GREEN = ["web-green-1", "web-green-2"]


def write_config(lab: Lab, tmp_path: Path, **web: Any) -> Path:
    """The lab config with its own state store, a short connect timeout and `web` overrides."""
    doc = yaml.safe_load(lab.paths.config.read_text())
    doc["state"] = {"path": "state/state.db"}
    doc["ssh"]["connect_timeout"] = 2
    doc["services"]["web"].update(web)
    path = tmp_path / "bluegreen.yml"
    path.write_text(yaml.safe_dump(doc))
    return path


@pytest.fixture
def green(lab: Lab) -> Iterator[Lab]:
    """web green as it came from the image, before and after the test."""
    lab.reset(GREEN)
    try:
        yield lab
    finally:
        for host in GREEN:
            lab.heal(host)
        lab.reset(GREEN)


def rows(doc: dict[str, Any], host: str, check: str) -> list[dict[str, Any]]:
    return [r for r in doc["results"] if r["host"] == host and r["check"] == check]


def one_row(doc: dict[str, Any], host: str, check: str) -> dict[str, Any]:
    found = rows(doc, host, check)
    assert len(found) == 1, (host, check, doc["results"])
    return found[0]


def green_targets(config_path: Path) -> Any:
    config = load_config(config_path)
    return targets_for(config, load_fleet(config).service("web").side("green"))


def sh(lab: Lab, host: str, script: str) -> None:
    lab.exec(host, ["sh", "-c", script], timeout=120)


# ---- stale-processes and package ----------------------------------------------------------
def test_stale_processes_fails_until_the_service_restarts(green: Lab, tmp_path: Path) -> None:
    cfg = write_config(green, tmp_path)
    target = [t for t in green_targets(cfg) if t.name == "web-green-1"]
    checks = parse_checks(
        [
            {"kind": "stale-processes"},
            {"kind": "package", "name": "demo-openssl", "fixed": "3.0.15-1"},
        ]
    )
    before = run_checks(target, checks, deadline_s=60)
    assert before.ok is False  # still vulnerable
    assert {r.check: r.status for r in before.results}["stale-processes"] == "pass"

    sh(green, "web-green-1", "apt-get update -q && apt-get install -y -q demo-openssl=3.0.15-1")
    after = run_checks(target, checks, deadline_s=60)
    by_id = {r.check: r for r in after.results}
    stale = by_id["stale-processes"]
    assert stale.status == "fail", stale
    assert "demo-web" in stale.evidence and "demo-web.service" in stale.evidence
    assert "/usr/lib/demo-openssl/libdemossl.so.3" in stale.evidence
    assert by_id["package:demo-openssl"].status == "pass"  # installed, but not in effect

    sh(green, "web-green-1", "systemctl restart demo-web")
    healed = run_checks(target, checks, deadline_s=60)
    assert healed.ok, healed.failures


def test_vulnerable_package_fails_with_cve_and_versions(green: Lab, tmp_path: Path) -> None:
    cfg = write_config(
        green,
        tmp_path,
        checks=[
            {
                "kind": "package",
                "name": "demo-openssl",
                "fixed": "3.0.15-1",
                "advisory": "DEMO-2026-01",
                "cves": ["CVE-2026-0001"],
            }
        ],
    )
    code, doc = bluegreen_json(cfg, "verify", "web", "--side", "green")
    assert code == 3, doc
    for host in GREEN:
        row = one_row(doc, host, "package:demo-openssl")
        assert row["status"] == "fail"
        for word in ("CVE-2026-0001", "DEMO-2026-01", "3.0.11-1", "3.0.15-1"):
            assert word in row["evidence"], row
    sh(green, "web-green-2", "apt-get update -q && apt-get install -y -q demo-openssl=3.0.15-1")
    code, doc = bluegreen_json(cfg, "verify", "web", "--side", "green")
    assert code == 3
    assert one_row(doc, "web-green-2", "package:demo-openssl")["status"] == "pass"
    assert one_row(doc, "web-green-1", "package:demo-openssl")["status"] == "fail"


# ---- listening and service --------------------------------------------------------------
def test_listening_allow_list_and_service(green: Lab, tmp_path: Path) -> None:
    cfg = write_config(
        green,
        tmp_path,
        fixed_versions={},
        checks=[
            {"kind": "listening", "ports": [22, 8080], "allow": []},
            {"kind": "service", "name": "demo-web"},
        ],
    )
    code, doc = bluegreen_json(cfg, "verify", "web", "--side", "green")
    assert code == 0, doc
    assert one_row(doc, "web-green-1", "listening:allow-list")["status"] == "pass"
    assert one_row(doc, "web-green-2", "service:demo-web")["status"] == "pass"

    sh(green, "web-green-1", "systemd-run --unit=bgtest-listener python3 -m http.server 9999")
    sh(
        green,
        "web-green-1",
        "for i in $(seq 50); do ss -Htln | grep -q :9999 && exit 0; sleep 0.1; done; exit 1",
    )
    code, doc = bluegreen_json(cfg, "verify", "web", "--side", "green")
    assert code == 3, doc
    extra = one_row(doc, "web-green-1", "listening:allow-list")
    assert extra["status"] == "fail" and "9999" in extra["evidence"], extra
    assert "python3" in extra["evidence"]
    assert one_row(doc, "web-green-2", "listening:allow-list")["status"] == "pass"
    assert "tcp/9999" in one_row(doc, "web-green-1", "drift")["evidence"]

    sh(green, "web-green-1", "systemctl stop bgtest-listener")
    sh(green, "web-green-2", "systemctl disable --now demo-web")
    code, doc = bluegreen_json(cfg, "verify", "web", "--side", "green")
    assert code == 3, doc
    assert one_row(doc, "web-green-1", "listening:allow-list")["status"] == "pass"
    svc = one_row(doc, "web-green-2", "service:demo-web")
    assert svc["status"] == "fail" and "not running, not enabled" in svc["evidence"], svc
    assert one_row(doc, "web-green-2", "listening:8080")["status"] == "fail"


# ---- unreachable ------------------------------------------------------------------------
def test_unreachable_host_fails_with_reason(green: Lab, tmp_path: Path) -> None:
    cfg = write_config(green, tmp_path, fixed_versions={})
    green.fault("web-green-1", "unreachable")
    try:
        code, doc = bluegreen_json(cfg, "verify", "web", "--side", "green")
    finally:
        green.heal("web-green-1")
    assert code == 3, doc
    mine = [r for r in doc["results"] if r["host"] == "web-green-1"]
    assert mine and all(r["status"] != "pass" for r in mine), mine
    reasons = " ".join(r["evidence"] for r in mine)
    assert "unreachable" in reasons or "timed out" in reasons, mine
    assert doc["drift"]["errors"].get("web-green-1"), doc["drift"]
    assert all(r["status"] == "pass" for r in doc["results"] if r["host"] == "web-green-2")


# ---- user suites ------------------------------------------------------------------------
def plain_pytest(lab: Lab, hosts: list[str], tmp_path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            str(SUITE),
            "--hosts=" + ",".join(f"ssh://{h}" for h in hosts),
            f"--ssh-config={lab.paths.root / 'ssh' / 'ssh_config'}",
            "-p",
            "no:cacheprovider",
            "-c",
            "/dev/null",
            f"--rootdir={tmp_path}",
            "-q",
        ],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=tmp_path,
        check=False,
    )


def test_third_party_suite_runs_through_bluegreen_and_plain_pytest(
    green: Lab, tmp_path: Path
) -> None:
    cfg = write_config(green, tmp_path, fixed_versions={}, suites=[str(SUITE)])
    code, doc = bluegreen_json(cfg, "verify", "web", "--side", "green")
    assert code == 0, doc
    for host in GREEN:
        for test in ("test_sshd_process_running", "test_shadow_mode", "test_telnet_not_installed"):
            assert one_row(doc, host, f"suite:{SUITE.name}::{test}")["status"] == "pass"
    plain = plain_pytest(green, GREEN, tmp_path)
    assert plain.returncode == 0, plain.stdout + plain.stderr
    assert "6 passed" in plain.stdout, plain.stdout

    sh(green, "web-green-1", "chmod 0644 /etc/shadow")
    code, doc = bluegreen_json(cfg, "verify", "web", "--side", "green")
    assert code == 3, doc
    bad = one_row(doc, "web-green-1", f"suite:{SUITE.name}::test_shadow_mode")
    assert bad["status"] == "fail" and "420" in bad["evidence"], bad  # 0o644 == 420
    assert one_row(doc, "web-green-2", f"suite:{SUITE.name}::test_shadow_mode")["status"] == "pass"
    plain = plain_pytest(green, GREEN, tmp_path)
    assert plain.returncode == 1 and "1 failed, 5 passed" in plain.stdout, plain.stdout


# ---- drift and baseline -----------------------------------------------------------------
def test_drift_names_host_and_file(green: Lab, tmp_path: Path) -> None:
    cfg = write_config(green, tmp_path)
    code, doc = bluegreen_json(cfg, "drift", "web", "--side", "green")
    assert code == 0 and doc["ok"], doc
    assert sorted(doc["hosts"]) == sorted([*GREEN, "web-blue-1", "web-blue-2"])

    sh(green, "web-green-2", "echo '# bgtest drift' >> /etc/ssh/sshd_config")
    code, doc = bluegreen_json(cfg, "drift", "web", "--side", "green")
    assert code == 3, doc
    found = [(d["host"], d["kind"], d["key"]) for d in doc["differences"]]
    assert ("web-green-2", "file", "/etc/ssh/sshd_config") in found, found
    assert {h for h, _, _ in found} == {"web-green-2"}, found
    text = bluegreen(cfg, "drift", "web")
    assert text.returncode == 3
    assert "web-green-2" in text.stdout and "/etc/ssh/sshd_config" in text.stdout


def test_drift_fails_the_gate_and_warn_mode_does_not(green: Lab, tmp_path: Path) -> None:
    sh(green, "web-green-1", "echo '# bgtest drift' >> /etc/ssh/sshd_config")
    cfg = write_config(green, tmp_path, fixed_versions={})
    code, doc = bluegreen_json(cfg, "verify", "web", "--side", "green")
    assert code == 3, doc
    row = one_row(doc, "web-green-1", "drift")
    assert row["status"] == "fail" and "/etc/ssh/sshd_config" in row["evidence"], row
    warn_dir = tmp_path / "warn"
    warn_dir.mkdir()
    cfg = write_config(green, warn_dir, fixed_versions={}, drift={"mode": "warn"})
    code, doc = bluegreen_json(cfg, "verify", "web", "--side", "green")
    assert code == 0, doc
    assert any("/etc/ssh/sshd_config" in w for w in doc["warnings"]), doc


def test_baseline_save_and_check(green: Lab, tmp_path: Path) -> None:
    cfg = write_config(green, tmp_path)
    code, doc = bluegreen_json(cfg, "baseline", "save", "web", "--side", "blue")
    assert code == 0, doc
    path = tmp_path / "baselines" / "web.json"
    assert Path(doc["path"]) == path
    first = path.read_bytes()
    assert bluegreen(cfg, "baseline", "save", "web", "--side", "blue").returncode == 0
    assert path.read_bytes() == first  # stable: same hosts, same file
    saved = json.loads(first)
    assert saved["fingerprint"]["package"]["demo-openssl"] == "3.0.11-1"

    code, doc = bluegreen_json(cfg, "baseline", "check", "web")
    assert code == 0 and doc["ok"], doc
    sh(green, "web-green-2", "echo '# bgtest drift' >> /etc/ssh/sshd_config")
    code, doc = bluegreen_json(cfg, "baseline", "check", "web", "--side", "green")
    assert code == 3, doc
    found = [(d["host"], d["kind"], d["key"]) for d in doc["differences"]]
    # a listed file, and sshd's config in the security part of the fingerprint
    assert found == [("web-green-2", "file", "/etc/ssh/sshd_config"),
                     ("web-green-2", "sshd-config", "/etc/ssh/sshd_config")], found


# ---- the flip gate reads "verified after the last patch" -------------------------------
def test_flip_refused_when_a_patch_is_newer_than_the_verification(
    green: Lab, tmp_path: Path
) -> None:
    cfg = write_config(green, tmp_path, fixed_versions={})
    config = load_config(cfg)
    store = open_store(config)
    try:
        outcome = verify_side(config, store, "web", "green", actor="test")
        assert outcome.ok, outcome.summary
        patched(store,
            "web",
            "green",
            "demo-openssl=9.9.9",
            audit=AuditEntryInput(actor="test", command="test.patch", service="web"),
        )
    finally:
        store.close()
    refused = bluegreen(cfg, "flip", "web", "--to", "green", "--reason", "x")
    assert refused.returncode == 3, refused.stdout + refused.stderr
    assert "verif" in refused.stderr
    code, st = bluegreen_json(cfg, "status", "web")
    assert code == 0 and st["live"] == "blue", st
