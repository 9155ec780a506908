"""The security fingerprint on real lab hosts: the gate notices a probe that changes the
host, and drift and the approved baseline name what was planted on a host."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from orchestrator.lab.lab import Lab
from tests.support.cli import bluegreen, bluegreen_json
from tests.support.lab import no_steps_config

pytestmark = [pytest.mark.lab, pytest.mark.destructive]

ROOT = Path(__file__).resolve().parents[2]
ADDS_KEY = ROOT / "tests" / "data" / "suites" / "test_adds_root_key.py"
GREEN = ["web-green-1", "web-green-2"]
WEB = ["web-blue-1", "web-blue-2", *GREEN]


def write_config(lab: Lab, tmp_path: Path, **web: Any) -> Path:
    doc = yaml.safe_load(no_steps_config(lab).read_text())
    doc["state"] = {"path": "state/state.db"}
    doc["ssh"]["connect_timeout"] = 2
    doc["services"]["web"].update({"fixed_versions": {}, **web})
    doc["services"]["web"]["patch"]["rebuild_playbook"] = "playbooks/lab-rebuild.yml"
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


class Receiver:
    """A webhook receiver on loopback: the JSON bodies POSTed to it."""

    def __init__(self) -> None:
        import http.server
        import threading

        got: list[dict[str, Any]] = []

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server's name
                got.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
                self.send_response(204)
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.events = got
        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def history(cfg: Path) -> list[dict[str, Any]]:
    code, doc = bluegreen_json(cfg, "history", "web")
    assert code == 0, doc
    return list(doc["records"] if isinstance(doc, dict) else doc)


def test_watch_once_reports_a_deviation_of_the_live_side_everywhere(
    web: Lab, tmp_path: Path
) -> None:
    hook = Receiver()
    try:
        cfg = write_config(web, tmp_path, watch={"webhooks": [hook.url]})
        assert bluegreen(cfg, "baseline", "save", "web").returncode == 0
        code, doc = bluegreen_json(cfg, "watch", "web", "--once")
        assert code == 0 and not doc["deviation"] and doc["side"] == "blue", doc
        assert hook.events == []

        for script, _ in PLANTED.values():
            sh(web, "web-blue-2", script)
        sh(web, "web-green-1", "useradd bgtest-standby")  # not the live side: not watched
        code, doc = bluegreen_json(cfg, "watch", "web", "--once")
        assert code == 3 and doc["deviation"], doc
        words = doc["findings"]["web-blue-2"]
        assert any(w.startswith("user bgtest-eve added (uid=4242 ") for w in words), words
        assert any(w.startswith("listener tcp/9999 added (/usr/bin/python3") for w in words)
        assert any(w.startswith("setuid/setgid file /usr/local/bin/bgtest-suid added (4755 ")
                   for w in words), words
        assert set(doc["findings"]) == {"web-blue-2"}
        # the webhook event, the audit record and the metric
        assert [e["event"] for e in hook.events] == ["deviation"], hook.events
        assert hook.events[0]["findings"] == doc["findings"]
        assert hook.events[0]["audit_seq"] == doc["audit_seq"]
        records = [r for r in history(cfg) if r["command"] == "deviation"]
        assert len(records) == 1 and records[0]["after"]["findings"] == doc["findings"]
        code, doc = bluegreen_json(cfg, "baseline", "check", "web")
        assert code == 3 and doc["side"] == "blue", doc
        assert [e["by"] for e in hook.events] == ["watch", "baseline check"], hook.events
        metrics = bluegreen(cfg, "metrics").stdout
        assert 'bluegreen_deviations_total{service="web"} 2.0' in metrics, metrics
        text = bluegreen(cfg, "watch", "web", "--once")
        assert text.returncode == 3 and "DEVIATION" in text.stdout
        assert "web-blue-2: user bgtest-eve added" in text.stdout
    finally:
        hook.close()


def test_watch_quarantine_flips_under_load_and_keeps_the_side_out(
    web: Lab, tmp_path: Path
) -> None:
    from benchmarks.flip_load import LoadGenerator
    from tests.support.lab import audit_ok, served_by

    cfg = write_config(web, tmp_path, watch={"quarantine_on": ["authorized-key", "setuid"]})
    assert bluegreen(cfg, "baseline", "save", "web").returncode == 0
    code, doc = bluegreen_json(cfg, "verify", "web", "--side", "green")
    assert code == 0, doc
    sh(web, "web-blue-1", "echo 'ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIH4uX0p2b0JmN0xKcHh3eVdV"
       "ZkF4R2ZxR2d5R2xTbUZDbE5yQm8 intruder' >> /root/.ssh/authorized_keys")
    url = web.status()["frontends"]["web"] + "/version"
    with LoadGenerator(url, workers=4, max_seconds=120) as load:
        code, doc = bluegreen_json(cfg, "watch", "web", "--once", "--quarantine")
        time.sleep(1)  # requests after the flip too
    assert code == 3, doc
    assert doc["quarantine"]["changed"] and doc["quarantine"]["flip"]["to"] == "green", doc
    assert load.failed == 0 and load.sent > 50, (load.sent, load.errors)
    assert served_by(web, "web") == "green"
    code, st = bluegreen_json(cfg, "status", "web")
    assert st["sides"]["blue"]["state"] == "quarantined", st
    # never a flip target again: flip, rollback, and a verification does not lift it
    for args in (["flip", "web", "--to", "blue", "--reason", "t"],
                 ["rollback", "web", "--reason", "t"]):
        code, doc = bluegreen_json(cfg, *args)
        assert code == 3 and "quarantined" in doc["error"], doc
    assert served_by(web, "web") == "green"
    records = history(cfg)
    steps = [(r["command"], r["result"]) for r in records]
    after = steps[steps.index(("deviation", "deviation")):]
    assert [c for c, _ in after if c.startswith("quarantine")] == [
        "quarantine.begin", "quarantine"], steps  # intent, then the flip with the mark
    mark = [r for r in records if r["command"] == "quarantine"][-1]  # one transaction
    assert mark["after"]["blue_state"] == "quarantined" and "authorized-key" in mark["reason"]
    audit_ok(cfg)

    # the operator's command: the live side (now green) cannot be quarantined while blue
    # may not take traffic; nothing changes
    code, doc = bluegreen_json(cfg, "quarantine", "web", "--side", "green", "--reason", "INC-9")
    assert code == 3 and "refusing to send traffic to blue" in doc["error"], doc
    assert served_by(web, "web") == "green"
    code, st = bluegreen_json(cfg, "status", "web")
    assert st["sides"]["green"]["state"] != "quarantined", st

    # rebuild instead of repair: never the live side; the quarantined standby gets a fresh
    # root from the image and the full gate, and only then takes traffic again
    code, doc = bluegreen_json(cfg, "rebuild", "web", "--side", "green", "--reason", "INC-9")
    assert code == 1 and "refusing to rebuild green: it is the live side" in doc["error"], doc
    code, doc = bluegreen_json(cfg, "rebuild", "web", "--side", "blue", "--reason", "INC-9")
    assert code == 0 and doc["ok"], doc
    assert {r["status"] for r in doc["results"]} == {"pass"}, doc
    assert "intruder" not in sh(web, "web-blue-1", "cat /root/.ssh/authorized_keys")
    code, st = bluegreen_json(cfg, "status", "web")
    assert st["sides"]["blue"]["state"] == "verified", st
    with LoadGenerator(url, workers=4, max_seconds=120) as load:
        code, doc = bluegreen_json(cfg, "flip", "web", "--to", "blue", "--reason", "INC-9 done")
        time.sleep(1)
    assert code == 0, doc
    assert load.failed == 0, load.errors
    assert served_by(web, "web") == "blue"
    steps = [r["command"] for r in history(cfg)]
    assert steps[steps.index("rebuild.begin"):][:3] == ["rebuild.begin", "rebuild", "verify"]
    audit_ok(cfg)


def test_watch_runs_rounds_until_stopped(web: Lab, tmp_path: Path) -> None:
    import signal
    import subprocess

    from tests.support.cli import BLUEGREEN

    cfg = write_config(web, tmp_path)
    assert bluegreen(cfg, "baseline", "save", "web").returncode == 0
    proc = subprocess.Popen([*BLUEGREEN, "-c", str(cfg), "watch", "web", "--interval", "1"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 120
        lines: list[str] = []
        assert proc.stdout is not None
        while len(lines) < 2 and time.monotonic() < deadline:
            lines.append(proc.stdout.readline())
        sh(web, "web-blue-1", "echo '* * * * * root true' > /etc/cron.d/bgtest")
        while time.monotonic() < deadline:
            line = proc.stdout.readline()
            lines.append(line)
            if "cron file /etc/cron.d/bgtest added" in line:
                break
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=60)
    finally:
        proc.kill()
    text = "".join(lines) + out
    assert "web blue: matches" in lines[0], text
    assert "DEVIATION" in text and "web-blue-1: cron file /etc/cron.d/bgtest added" in text
    assert proc.returncode == 3, (text, err)  # a deviation was seen


def test_rebuild_brings_a_broken_standby_back_to_the_live_versions(
    web: Lab, tmp_path: Path
) -> None:
    from tests.support.lab import FIXED, served_by, versions

    cfg = write_config(web, tmp_path, fixed_versions={"demo-openssl": FIXED["demo-openssl"]})
    code, doc = bluegreen_json(cfg, "rollout", "web", "--yes")
    assert code == 0, doc
    assert served_by(web, "web") == "green"
    # the standby gets a broken version that apt will not downgrade
    sh(web, "web-blue-1", "apt-get update -q && apt-get install -y -q demo-web=1.1.0")
    assert versions(web, "web-blue-1")["demo-web"] == "1.1.0"
    code, doc = bluegreen_json(cfg, "rebuild", "web", "--side", "blue", "--reason", "CHG-7")
    assert code == 0 and doc["ok"], doc
    assert doc["live_versions"] == FIXED, doc
    for host in ("web-blue-1", "web-blue-2"):
        assert versions(web, host) == FIXED
    code, st = bluegreen_json(cfg, "status", "web")
    assert st["sides"]["blue"]["state"] == "verified", st
