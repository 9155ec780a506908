"""Campaigns end to end on the lab: real CLI, Ansible, probes, HAProxy, SQLite.

Full campaigns take about a minute each on the lab, so each test combines several
assertions (kill -9 + resume + converge + webhooks + report in one run, and so on).
"""

from __future__ import annotations

import json
import os
import subprocess
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import yaml

from orchestrator.lab.lab import Lab
from tests.support.cli import BLUEGREEN, bluegreen, bluegreen_json
from tests.support.lab import (
    FIXED,
    VULNERABLE,
    assert_consistent,
    audit_ok,
    hosts_of,
    no_steps_config,
    served_by,
    slow_patch_config,
    versions,
)

pytestmark = [pytest.mark.lab, pytest.mark.destructive]

ROOT = Path(__file__).resolve().parents[2]

ADVISORY = {
    "id": "DEMO-2026-0001",
    "cves": ["CVE-2026-0001"],
    "severity": "high",
    "packages": dict(FIXED),
}


def write_campaign(tmp_path: Path, name: str, **over: Any) -> Path:
    doc: dict[str, Any] = {
        "name": name,
        "advisories": [ADVISORY],
        "waves": [{"services": ["web"]}, {"services": ["api"]}],
        "window": {"always": True},
    }
    doc.update(over)
    path = tmp_path / f"{name}.yml"
    path.write_text(yaml.safe_dump(doc))
    return path


def status_of(config: Path, name: str) -> dict[str, Any]:
    code, doc = bluegreen_json(config, "campaign", "status", name)
    assert code == 0, doc
    return dict(doc)


class Receiver:
    """A local webhook receiver: records the JSON events it gets, in order."""

    def __init__(self) -> None:
        self.events: list[dict[str, Any]] = []
        events = self.events

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server API
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                events.append(json.loads(body))
                self.send_response(204)
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def names(self) -> list[str]:
        return [e["event"] + (":" + e["service"] if "service" in e else "") for e in self.events]


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    r.thread.start()
    yield r
    r.server.shutdown()
    r.server.server_close()
    r.thread.join(timeout=5)


def test_campaign_two_waves_kill9_resume_converge_webhooks_report(
    fresh_lab: Lab, tmp_path: Path, receiver: Receiver
) -> None:
    lab, config = fresh_lab, no_steps_config(fresh_lab)
    camp = write_campaign(
        tmp_path,
        "full",
        retention={"keep": "0s", "converge": True},
        notify={"webhooks": [receiver.url], "timeout_seconds": 2, "retries": 1},
    )
    code, plan = bluegreen_json(config, "campaign", "plan", str(camp))
    assert code == 0 and plan["window"]["open"], plan
    assert [s["service"] for s in plan["services"]] == ["web", "api"]
    assert plan["services"][0]["packages"] == ["demo-openssl=3.0.15-1", "demo-web=1.0.1"]

    # kill -9 right after web's flip reached the router, before anything recorded it
    proc = bluegreen(
        config, "campaign", "run", str(camp), "--yes", env={"BLUEGREEN_FAILPOINT": "traffic:router:rollout.flip"}
    )
    assert proc.returncode == -9, proc.stderr[-2000:]
    assert served_by(lab, "web") == "green" and served_by(lab, "api") == "blue"
    assert status_of(config, "full")["status"] == "interrupted"

    code, doc = bluegreen_json(config, "campaign", "resume", "full", timeout=900)
    assert code == 0, doc
    assert doc["status"] == "done"
    assert {s: v["status"] for s, v in doc["services"].items()} == {"web": "done", "api": "done"}
    assert all(v["converged"] for v in doc["services"].values())
    for service in ("web", "api"):
        assert served_by(lab, service) == "green"
        for side in ("blue", "green"):  # converged: both sides match again
            for h in hosts_of(lab, service, side):
                assert versions(lab, h) == FIXED, (h, versions(lab, h))
        st = assert_consistent(lab, config, service)
        assert st["sides"]["blue"]["verified_after_patch"]

    # webhooks: in order, across the kill
    names = receiver.names()
    assert names[0] == "started" and names[-1] == "done", names
    assert names.index("service_flipped:web") < names.index("service_flipped:api"), names
    assert "failed" not in names

    # the evidence
    code, out = bluegreen_json(config, "report", "full", "--format", "json")
    assert code == 0, out
    path = Path(out["path"])
    assert path.parent == lab.paths.root / "reports"
    assert (path.stat().st_mode & 0o777) == 0o600
    rep = json.loads(path.read_text())
    assert rep["advisories"][0]["cves"] == ["CVE-2026-0001"]
    web = rep["services"]["web"]
    for h in hosts_of(lab, "web", "green"):
        assert web["hosts"][h] == {"before": VULNERABLE, "after": FIXED}
    assert web["flip"]["from"] == "blue" and web["flip"]["to"] == "green"
    assert any(
        r["check"].startswith("package:demo-openssl") for r in web["verification"]["results"]
    )
    assert all(r["status"] == "pass" for r in web["verification"]["results"])
    code, chain = bluegreen_json(config, "audit", "verify")
    assert rep["audit"]["head_hash"] == chain["head_hash"]
    assert rep["audit"]["head"] == f"{chain['count']}:{chain['head_hash']}"
    md = bluegreen(config, "report", "full", "--format", "md", "--output", str(tmp_path / "r.md"))
    # Markdown escapes its markup characters (a rendered view shows CVE-2026-0001)
    assert md.returncode == 0 and "CVE\\-2026\\-0001" in (tmp_path / "r.md").read_text()
    # an auditor checks the reports later: their heads are prefixes of today's chain
    assert bluegreen(config, "rollback", "api", "--reason", "after the report").returncode == 0
    for report in (path, tmp_path / "r.md"):
        code, checked = bluegreen_json(config, "audit", "verify", "--report", str(report))
        assert code == 0 and checked["ok"] and checked["given"][0]["seq"] == chain["count"], \
            checked
    doctored = tmp_path / "doctored.md"
    doctored.write_text((tmp_path / "r.md").read_text().replace(
        f"{chain['count']}:{chain['head_hash']}", f"{chain['count']}:{'e' * 64}"))
    code, checked = bluegreen_json(config, "audit", "verify", "--report", str(doctored))
    assert code == 1 and checked["kind"] == "replaced", checked
    # a symlink planted at the output is refused; its target is untouched
    victim = tmp_path / "victim"
    victim.write_text("precious\n")
    (tmp_path / "link.md").symlink_to(victim)
    refused = bluegreen(config, "report", "full", "--format", "md", "--output",
                        str(tmp_path / "link.md"))
    assert refused.returncode == 2 and "symbolic link" in refused.stderr, refused.stderr
    assert victim.read_text() == "precious\n"


def test_window_closed_and_closing_mid_campaign_defers(fresh_lab: Lab, tmp_path: Path) -> None:
    lab, config = fresh_lab, no_steps_config(fresh_lab)
    now = datetime.now(UTC)
    later = {
        "start": (now + timedelta(hours=1)).isoformat(),
        "end": (now + timedelta(hours=2)).isoformat(),
    }
    closed = write_campaign(tmp_path, "closed", window={"intervals": [later]})
    code, plan = bluegreen_json(config, "campaign", "plan", str(closed))
    assert code == 0 and not plan["window"]["open"]
    assert plan["window"]["next_open"] == later["start"]
    code, doc = bluegreen_json(config, "campaign", "run", str(closed), "--yes")
    assert code == 6 and doc["status"] == "deferred", doc
    assert {v["status"] for v in doc["services"].values()} == {"deferred"}
    for h in hosts_of(lab, "web", "green"):
        assert versions(lab, h) == VULNERABLE  # nothing was even patched
    code, doc = bluegreen_json(config, "campaign", "abort", "closed")
    assert code == 0, doc

    # the window closes while web is being patched: web is patched+verified but not flipped.
    # The patch step is made to outlast the window on purpose: it is fast enough now to
    # patch, verify and flip inside a few seconds.
    config = slow_patch_config(config, tmp_path, seconds=12)
    soon = {
        "start": (now - timedelta(minutes=1)).isoformat(),
        "end": (datetime.now(UTC) + timedelta(seconds=8)).isoformat(),
    }
    closing = write_campaign(tmp_path, "closing", window={"intervals": [soon]})
    code, doc = bluegreen_json(config, "campaign", "run", str(closing), "--yes")
    assert code == 6, doc
    assert doc["services"]["web"]["status"] == "deferred"
    assert doc["services"]["api"]["status"] == "deferred"
    assert served_by(lab, "web") == "blue" and served_by(lab, "api") == "blue"
    for h in hosts_of(lab, "web", "green"):
        assert versions(lab, h) == FIXED  # the safe step finished
    code, st = bluegreen_json(config, "status", "web")
    assert st["sides"]["green"]["verified_after_patch"] and st["lock"] is None
    # still closed: resume defers again, and flips nothing
    code, doc = bluegreen_json(config, "campaign", "resume", "closing")
    assert code == 6 and served_by(lab, "web") == "blue", doc
    code, doc = bluegreen_json(config, "campaign", "abort", "closing", "--reason", "window gone")
    assert code == 0 and doc["aborted_children"], doc
    assert status_of(config, "closing")["status"] == "aborted"
    assert_consistent(lab, config, "web")
    code, st = bluegreen_json(config, "status", "api")  # never touched
    assert code == 0 and st["lock"] is None and st["run_in_flight"] is None


def test_manual_approval_conflicting_campaign_and_approver_in_evidence(
    fresh_lab: Lab, tmp_path: Path
) -> None:
    lab, config = fresh_lab, no_steps_config(fresh_lab)
    camp = write_campaign(
        tmp_path,
        "approve-me",
        waves=[{"services": ["web"]}],
        approval={"mode": "manual", "at": "before_flip", "distinct_approver": True},
    )
    alice, bob = {"SUDO_USER": "alice"}, {"SUDO_USER": "bob"}
    code, doc = bluegreen_json(config, "campaign", "run", str(camp), "--yes", env=alice)
    assert code == 0 and doc["status"] == "awaiting_approval", doc
    assert served_by(lab, "web") == "blue"  # nothing flips before approval
    for h in hosts_of(lab, "web", "green"):
        assert versions(lab, h) == FIXED
    assert status_of(config, "approve-me")["status"] == "awaiting_approval"
    # resume before approval: still waits, still no flip
    code, doc = bluegreen_json(config, "campaign", "resume", "approve-me")
    assert code == 0 and doc["status"] == "awaiting_approval" and served_by(lab, "web") == "blue"

    # a second campaign touching web refuses clearly
    other = write_campaign(tmp_path, "other", waves=[{"services": ["web"]}])
    code, err = bluegreen_json(config, "campaign", "run", str(other), "--yes")
    assert code == 5 and "approve-me" in err["error"], err

    # the starter cannot approve, whatever --actor says; another person can
    code, err = bluegreen_json(config, "--actor", "bob", "campaign", "approve", "approve-me",
                               env=alice)
    assert code == 2 and "another person" in err["error"] and "alice" in err["error"], err
    assert served_by(lab, "web") == "blue"
    code, ok = bluegreen_json(config, "--actor", "bob", "campaign", "approve", "approve-me",
                              env=bob)
    assert code == 0 and ok["actor"] == "bob" and ok["sudo_user"] == "bob", ok
    code, doc = bluegreen_json(config, "campaign", "resume", "approve-me")
    assert code == 0 and doc["status"] == "done", doc
    assert served_by(lab, "web") == "green"
    assert_consistent(lab, config, "web")
    code, hist = bluegreen_json(config, "history")
    approvals = [r for r in hist if r["command"] == "campaign.approve"]
    assert [(r["actor"], r["sudo_user"]) for r in approvals] == [("bob", "bob")]
    code, out = bluegreen_json(config, "report", "approve-me", "--format", "json")
    rep = json.loads(Path(out["path"]).read_text())
    assert [(a["actor"], a["sudo_user"]) for a in rep["approvals"]] == [("bob", "bob")]
    flip_at = rep["services"]["web"]["flip"]["at"]
    assert flip_at > rep["approvals"][0]["at"]


def test_failing_service_wave_policy_continue_then_stop(fresh_lab: Lab, tmp_path: Path) -> None:
    lab, config = fresh_lab, no_steps_config(fresh_lab)
    broken_api = {"id": "BROKEN-1", "packages": {"demo-web": "1.1.0"}, "applies_to": ["api"]}
    cont = write_campaign(
        tmp_path,
        "cont",
        advisories=[{"id": "DEMO-2026-0001", "packages": {"demo-openssl": "3.0.15-1"}}, broken_api],
        waves=[{"services": ["api", "web"], "on_failure": "continue"}],
    )
    code, doc = bluegreen_json(config, "campaign", "run", str(cont), "--yes", timeout=900)
    assert code == 3, doc  # verification failed
    assert doc["services"]["api"]["status"] == "failed"
    assert doc["services"]["web"]["status"] == "done"  # continue: the next service went on
    assert served_by(lab, "api") == "blue" and served_by(lab, "web") == "green"
    st = assert_consistent(lab, config, "api")
    assert st["sides"]["green"]["verification_ok"] is False
    assert_consistent(lab, config, "web")

    stop = write_campaign(
        tmp_path,
        "stop",
        advisories=[{"id": "DEMO-2026-0001", "packages": {"demo-openssl": "3.0.15-1"}}, broken_api],
        waves=[{"services": ["api"], "on_failure": "stop"}, {"services": ["web"]}],
    )
    code, doc = bluegreen_json(config, "campaign", "run", str(stop), "--yes", timeout=900)
    assert code == 3, doc
    assert doc["services"]["api"]["status"] == "failed"
    assert doc["services"]["web"]["status"] == "skipped"  # stop: web was not touched
    assert served_by(lab, "web") == "green"
    for h in hosts_of(lab, "web", "blue"):
        assert versions(lab, h) == VULNERABLE
    audit_ok(config)


def test_abort_mid_campaign_leaves_services_consistent(fresh_lab: Lab, tmp_path: Path) -> None:
    lab = fresh_lab
    # the abort must land inside the patch step, which alone takes ~2 s now
    config = slow_patch_config(no_steps_config(fresh_lab), tmp_path, seconds=10)
    camp = write_campaign(tmp_path, "abort-me")
    proc = subprocess.Popen(
        [*BLUEGREEN, "-c", str(config), "campaign", "run", str(camp), "--yes", "--json"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=dict(os.environ),
    )
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            code, doc = bluegreen_json(config, "campaign", "status", "abort-me")
            if code == 0 and doc["services"]["web"]["status"] == "in flight":
                break
            time.sleep(0.5)
        else:
            raise AssertionError("web never got in flight")
        time.sleep(3)  # inside the patch step
        code, doc = bluegreen_json(config, "campaign", "abort", "abort-me", "--reason", "stop it")
        assert code == 0 and doc["aborted_children"], doc
        out, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode != 0, out
    assert served_by(lab, "web") == "blue" and served_by(lab, "api") == "blue"
    st = status_of(config, "abort-me")
    assert st["status"] == "aborted" and st["services"]["api"]["status"] == "skipped", st
    assert_consistent(lab, config, "web")
    code, api = bluegreen_json(config, "status", "api")  # never touched
    assert code == 0 and api["lock"] is None and api["run_in_flight"] is None
    for h in hosts_of(lab, "api", "green"):
        assert versions(lab, h) == VULNERABLE


def test_a_wave_with_max_parallel_patches_its_services_at_the_same_time(
    fresh_lab: Lab, tmp_path: Path
) -> None:
    """One wave, web and api, max_parallel 2: both rollouts run at once (each with its own
    state store connection and router) and the journal shows them overlapping."""
    from orchestrator.state.sqlite import SQLiteStateStore

    lab, config = fresh_lab, no_steps_config(fresh_lab)
    camp = write_campaign(
        tmp_path, "together", waves=[{"services": ["web", "api"], "max_parallel": 2}]
    )
    code, doc = bluegreen_json(config, "campaign", "run", str(camp), "--yes", timeout=900)
    with SQLiteStateStore(lab.paths.root / "state" / "state.db") as store:
        entries = store.journal(doc["run_id"])
        children = [e.data.get("child_run") for e in entries if e.phase == "begin"]
        why = {  # on failure: what each child said, so a rare failure can be read afterwards
            "journal": [(e.step, e.phase, e.data) for e in entries],
            "children": [(r.run_id, r.status, r.result,
                          [(e.step, e.phase, e.data) for e in store.journal(c)][-3:])
                         for c in children if c for r in [store.get_run(c)] if r is not None],
        }
    assert code == 0, (doc.get("message"), why)
    assert {s: v["status"] for s, v in doc["services"].items()} == {"web": "done", "api": "done"}
    at = {(e.step, e.phase): e.at for e in entries}
    for a, b in (("web", "api"), ("api", "web")):  # each began before the other ended
        assert at[(f"service:{a}", "begin")] < at[(f"service:{b}", "end")], at
    for service in ("web", "api"):
        assert served_by(lab, service) == "green"
        for h in hosts_of(lab, service, "green"):
            assert versions(lab, h) == FIXED
        assert_consistent(lab, config, service)
