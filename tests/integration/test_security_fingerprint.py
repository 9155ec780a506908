"""The security fingerprint on real lab hosts: the gate notices a probe that changes the
host, and drift and the approved baseline name what was planted on a host."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from orchestrator.lab.lab import Lab
from tests.support.cli import bluegreen, bluegreen_json

pytestmark = [pytest.mark.lab, pytest.mark.destructive]

ROOT = Path(__file__).resolve().parents[2]
ADDS_KEY = ROOT / "tests" / "data" / "suites" / "test_adds_root_key.py"
GREEN = ["web-green-1", "web-green-2"]
WEB = ["web-blue-1", "web-blue-2", *GREEN]


def write_config(lab: Lab, tmp_path: Path, **web: Any) -> Path:
    doc = yaml.safe_load(lab.paths.config.read_text())
    doc["state"] = {"path": "state/state.db"}
    doc["ssh"]["connect_timeout"] = 2
    doc["services"]["web"].update({"fixed_versions": {}, **web})
    path = tmp_path / "bluegreen.yml"
    path.write_text(yaml.safe_dump(doc))
    return path


@pytest.fixture
def web(lab: Lab) -> Iterator[Lab]:
    """web's hosts as they came from the image (traffic on blue), before and after."""
    lab.reset(WEB)
    try:
        yield lab
    finally:
        lab.reset(WEB)


def sh(lab: Lab, host: str, script: str) -> str:
    return lab.exec(host, ["sh", "-c", script], timeout=120).stdout


def rows(doc: dict[str, Any], check: str) -> dict[str, dict[str, Any]]:
    return {r["host"]: r for r in doc["results"] if r["check"] == check}


def test_a_suite_that_adds_a_root_key_fails_the_gate(web: Lab, tmp_path: Path) -> None:
    clean = write_config(web, tmp_path)
    code, doc = bluegreen_json(clean, "verify", "web", "--side", "green")
    assert code == 0, doc  # the sides' security fingerprints match, nothing changed
    assert {h: r["status"] for h, r in rows(doc, "host-unchanged").items()} == {
        h: "pass" for h in GREEN}

    (tmp_path / "s").mkdir()
    cfg = write_config(web, tmp_path / "s", suites=[str(ADDS_KEY)])
    code, doc = bluegreen_json(cfg, "verify", "web", "--side", "green")
    assert code == 3, doc
    suite = {r["host"]: r["status"] for r in doc["results"] if r["check"].startswith("suite:")}
    assert suite == {h: "pass" for h in GREEN}  # the suite itself passes...
    found = rows(doc, "host-unchanged")
    for host in GREEN:  # ...and the gate fails, naming the key it added
        key = sh(web, host, "ssh-keygen -l -f /tmp/bgtest-key.pub").split()[1]
        assert found[host]["status"] == "fail", found
        assert found[host]["evidence"] == (
            f"the verification itself modified {host}: authorized_keys of root +1 key ({key})")
    text = bluegreen(cfg, "verify", "web", "--side", "green")
    assert text.returncode == 3
    assert "the verification itself modified web-green-1" in text.stdout


PLANTED = {
    "setuid": ("cp /bin/true /usr/local/bin/bgtest-suid && chmod 4755 /usr/local/bin/bgtest-suid",
               "/usr/local/bin/bgtest-suid"),
    "user": ("useradd -u 4242 -s /bin/bash bgtest-eve", "bgtest-eve"),
    "cron": ("echo '* * * * * root true' > /etc/cron.d/bgtest", "/etc/cron.d/bgtest"),
    "listener": ("systemd-run --unit=bgtest-listener python3 -m http.server 9999"
                 " && for i in $(seq 50); do ss -Htln | grep -q :9999 && break; sleep 0.1; done",
                 "tcp/9999"),
    "sudoers": ("echo 'Defaults !lecture' >> /etc/sudoers", "/etc/sudoers"),
}


def test_planted_items_are_named_by_baseline_check_and_drift(web: Lab, tmp_path: Path) -> None:
    cfg = write_config(web, tmp_path)
    code, doc = bluegreen_json(cfg, "baseline", "save", "web")  # the live side: blue
    assert code == 0 and doc["side"] == "blue", doc
    saved = json.loads((tmp_path / "baselines" / "web.json").read_text())["fingerprint"]
    assert "root" in saved["user"] and saved["listener"]["tcp/22"] == "/usr/sbin/sshd"
    assert not any("AAAA" in k for k in saved["authorized-key"])  # fingerprints, no key bodies
    code, doc = bluegreen_json(cfg, "baseline", "check", "web")
    assert code == 0 and doc["ok"], doc
    assert sorted(doc["hosts"]) == ["web-blue-1", "web-blue-2"]  # the live side by default

    for script, _ in PLANTED.values():
        sh(web, "web-blue-1", script)
    code, doc = bluegreen_json(cfg, "baseline", "check", "web")
    assert code == 3, doc
    found = {(d["host"], d["kind"], d["key"]): d for d in doc["differences"]}
    for kind, (_, key) in PLANTED.items():
        assert ("web-blue-1", kind, key) in found, (kind, sorted(found))
    assert found[("web-blue-1", "user", "bgtest-eve")]["actual"].startswith("uid=4242 ")
    assert found[("web-blue-1", "user", "bgtest-eve")]["expected"] is None
    assert "python3" in found[("web-blue-1", "listener", "tcp/9999")]["actual"]
    assert {h for h, _, _ in found} == {"web-blue-1"}

    code, doc = bluegreen_json(cfg, "drift", "web", "--side", "green")
    assert code == 3, doc  # the live side drifted within itself
    drifted = {(d["host"], d["kind"], d["key"]) for d in doc["differences"]}
    for kind, (_, key) in PLANTED.items():
        assert ("web-blue-1", kind, key) in drifted, (kind, sorted(drifted))
