"""The rollout engine end to end on the lab: real Ansible, probes, HAProxy, SQLite."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
import yaml

from orchestrator.lab.lab import Lab
from tests.support.cli import bluegreen, bluegreen_json
from tests.support.lab import (
    FIXED,
    VULNERABLE,
    assert_consistent,
    audit_ok,
    fingerprint,
    hosts_of,
    no_steps_config,
    served_by,
    versions,
)

pytestmark = [pytest.mark.lab, pytest.mark.destructive]

def test_full_rollout_patches_standby_flips_and_leaves_live_untouched(fresh_lab: Lab) -> None:
    lab, config = fresh_lab, no_steps_config(fresh_lab)
    blue = hosts_of(lab, "web", "blue")
    before = {h: fingerprint(lab, h) for h in blue}
    code, doc = bluegreen_json(config, "rollout", "web", "--yes")
    assert code == 0, doc
    assert doc["status"] == "done" and doc["from"] == "blue" and doc["to"] == "green"
    assert set(doc["steps"]) == {"precheck", "patch", "verify", "flip", "bake"}
    for h in hosts_of(lab, "web", "green"):
        assert versions(lab, h) == FIXED
    for h in blue:
        assert versions(lab, h) == VULNERABLE
        assert fingerprint(lab, h) == before[h], f"live side {h} changed during the rollout"
        with urllib.request.urlopen(f"http://{_addr(lab, h)}:8080/health", timeout=3) as r:
            assert r.status == 200  # the old side stays warm
    assert served_by(lab, "web") == "green"
    assert served_by(lab, "api") == "blue"
    st = assert_consistent(lab, config, "web")
    assert st["sides"]["green"]["patch_level"] == "demo-openssl=3.0.15-1,demo-web=1.0.1"


def _addr(lab: Lab, host: str) -> str:
    return next(h["address"] for h in lab.status()["hosts"] if h["name"] == host)


def test_broken_version_fails_verification_and_nothing_flips(fresh_lab: Lab) -> None:
    lab, config = fresh_lab, no_steps_config(fresh_lab)
    before = {h: fingerprint(lab, h) for h in hosts_of(lab, "web", "blue")}
    code, doc = bluegreen_json(config, "rollout", "web", "--yes", "--package", "demo-web=1.1.0")
    assert code == 3, doc
    assert "verification" in doc["error"] and "http" in doc["error"]
    assert served_by(lab, "web") == "blue"
    for h, fp in before.items():
        assert fingerprint(lab, h) == fp
    st = assert_consistent(lab, config, "web")
    assert st["sides"]["green"]["verification_ok"] is False
    # a manual flip to the failed side is refused by the gate
    code, doc = bluegreen_json(config, "flip", "web", "--to", "green", "--reason", "try")
    assert code == 3, doc
    assert "verify_failed" in doc["error"] and "last verification failed" in doc["error"]
    # an incident rollback goes back to the side live before the last flip: there is none
    # (rollback is no longer a toggle), so nothing moves
    code, doc = bluegreen_json(config, "rollback", "web", "--reason", "INC-2")
    assert code == 0 and not doc["changed"] and "no earlier flip" in doc["message"], doc
    assert served_by(lab, "web") == "blue"


def test_subtle_version_is_caught_in_bake_and_rolled_back(fresh_lab: Lab) -> None:
    lab, config = fresh_lab, no_steps_config(fresh_lab)
    code, doc = bluegreen_json(
        config,
        "rollout",
        "web",
        "--yes",
        "--package",
        "demo-openssl=3.0.15-1",
        "--package",
        "demo-web=1.1.1",
    )
    assert code == 4, doc
    assert "rolled back" in doc["error"] or "back on blue" in doc["error"]
    assert served_by(lab, "web") == "blue"
    assert_consistent(lab, config, "web")
    code, hist = bluegreen_json(config, "history", "web")
    assert any(r["command"] == "rollout.auto-rollback" for r in hist)


class Load:
    """Continuous requests through the frontend (bounded in count and time)."""

    def __init__(self, url: str, max_requests: int = 20000, max_seconds: float = 60,
                 pause: float = 0.0) -> None:
        self.url, self.max_requests, self.max_seconds = url, max_requests, max_seconds
        self.pause = pause
        self.sent = self.failed = 0
        self.errors: list[str] = []
        self.latencies: list[float] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        started = time.monotonic()
        while (
            not self._stop.is_set()
            and self.sent < self.max_requests
            and time.monotonic() - started < self.max_seconds
        ):
            t0 = time.perf_counter()
            try:
                with urllib.request.urlopen(self.url, timeout=5) as r:
                    r.read()
            except (urllib.error.URLError, OSError) as exc:
                self.failed += 1
                self.errors.append(str(exc))
            self.sent += 1
            self.latencies.append(time.perf_counter() - t0)
            if self.pause:
                self._stop.wait(self.pause)

    def __enter__(self) -> Load:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=10)


def test_bake_rolls_back_on_real_users_5xx_seen_at_the_load_balancer(
    fresh_lab: Lab, tmp_path: Path
) -> None:
    """Bake's own probes ask /health, which the subtle 1.1.1 answers fine; users asking / get
    500s. Only the load balancer's counters of the new side see that: bake must roll back."""
    lab = fresh_lab
    doc = yaml.safe_load(no_steps_config(lab).read_text())
    doc["services"]["web"]["bake"].update(
        {"seconds": 30, "url_path": "/health", "min_responses": 20, "max_error_ratio": 0.05})
    config = tmp_path / "bluegreen.yml"
    config.write_text(yaml.safe_dump(doc))
    users = lab.status()["frontends"]["web"] + "/"
    with Load(users, max_requests=100_000, max_seconds=300, pause=0.05) as load:
        code, out = bluegreen_json(config, "rollout", "web", "--yes", "--package",
                                   "demo-openssl=3.0.15-1", "--package", "demo-web=1.1.1")
    assert code == 4, out
    assert "5xx" in out["error"] and "load balancer" in out["error"], out
    assert load.failed > 0  # the users did see the broken side for a moment
    assert served_by(lab, "web") == "blue"
    assert_consistent(lab, config, "web")
    _, hist = bluegreen_json(config, "history", "web")
    back = [r for r in hist if r["command"] == "rollout.auto-rollback"]
    assert back and "5xx" in back[0]["reason"], hist


def test_rollback_under_continuous_load_loses_no_request(fresh_lab: Lab) -> None:
    lab, config = fresh_lab, no_steps_config(fresh_lab)
    code, doc = bluegreen_json(config, "rollout", "web", "--yes")
    assert code == 0, doc
    with Load(lab.status()["frontends"]["web"] + "/version") as load:
        time.sleep(1)
        code, doc = bluegreen_json(config, "rollback", "web", "--reason", "INC-1 under load")
        assert code == 0, doc
        time.sleep(1)
    assert doc["from"] == "green" and doc["to"] == "blue"
    assert load.sent > 50
    assert load.failed == 0, load.errors[:5]
    assert served_by(lab, "web") == "blue"


def force_green(config: Path, service: str = "web") -> None:
    """Traffic on the (untouched, unverified) green side: an audited override."""
    code, doc = bluegreen_json(config, "flip", service, "--to", "green", "--force",
                               "--reason", "test setup: move to green")
    assert code == 0 and doc["to"] == "green" and doc["forced"], doc


def test_flip_survives_haproxy_reload_and_restart(fresh_lab: Lab) -> None:
    lab, config = fresh_lab, no_steps_config(fresh_lab)
    force_green(config)
    lab.reload_haproxy()
    assert served_by(lab, "web") == "green"
    lab.restart_haproxy()
    assert served_by(lab, "web") == "green"
    assert served_by(lab, "api") == "blue"
    assert_consistent(lab, config, "web")


def test_router_state_disagreement_refuses_and_adopt_is_audited(fresh_lab: Lab) -> None:
    lab, config = fresh_lab, no_steps_config(fresh_lab)
    force_green(config)
    from orchestrator.lab.lab import haproxy_command

    # someone moves traffic behind bluegreen's back
    haproxy_command(lab.paths.haproxy_socket, f"set map {lab.paths.map_file} web web_blue")
    code, st = bluegreen_json(config, "status", "web")
    assert code == 1 and not st["agrees"] and st["live"] == "blue" and st["state_live"] == "green"
    proc = bluegreen(config, "rollout", "web", "--yes")
    assert proc.returncode == 1, proc.stderr
    assert "router says blue" in proc.stderr and "state store says green" in proc.stderr
    # every traffic command stops on it, `flip` included (issue 10, scenario 11)
    for args in (("flip", "web", "--to", "green", "--reason", "x"),
                 ("flip", "web", "--to", "green", "--force", "--reason", "x"),
                 ("rollback", "web", "--reason", "x")):
        proc = bluegreen(config, *args)
        assert proc.returncode == 1 and "router says blue" in proc.stderr, (args, proc.stderr)
    assert served_by(lab, "web") == "blue"
    for h in hosts_of(lab, "web", "blue") + hosts_of(lab, "web", "green"):
        assert versions(lab, h) == VULNERABLE  # nothing was patched
    code, st = bluegreen_json(config, "status", "web", "--adopt", "--reason", "LB edited by hand")
    assert code == 0 and st["agrees"] and st["live"] == "blue"
    code, hist = bluegreen_json(config, "history", "web")
    assert hist[-1]["command"] == "adopt" and hist[-1]["reason"] == "LB edited by hand"


def test_tampered_audit_record_is_detected(fresh_lab: Lab) -> None:
    lab, config = fresh_lab, no_steps_config(fresh_lab)
    force_green(config)
    for reason in ("a", "b"):
        assert bluegreen_json(config, "rollback", "web", "--reason", reason)[0] == 0
    audit_ok(config)
    db = lab.paths.root / "state" / "state.db"
    with sqlite3.connect(db) as conn:
        table = _audit_table(conn)
        conn.execute(f"UPDATE {table} SET reason = 'nothing to see' WHERE seq = 2")
    code, doc = bluegreen_json(config, "audit", "verify")
    assert code == 1 and not doc["ok"] and doc["bad_seq"] == 2


def _audit_table(conn: sqlite3.Connection) -> str:
    names = [r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")]
    return next(n for n in names if "audit" in n and "head" not in n and "meta" not in n)


def test_rollback_imports_neither_ansible_nor_pytest(fresh_lab: Lab) -> None:
    """...nor, once any full load left the validated-config snapshot, pydantic or PyYAML."""
    lab = fresh_lab
    force_green(no_steps_config(lab), "api")  # so that the rollback below really flips
    assert bluegreen(no_steps_config(lab), "status", "api").returncode == 0  # leaves the snapshot
    code = (
        "import sys\nfrom orchestrator.cli import main\n"
        f"try:\n    main(['-c', {str(no_steps_config(lab))!r}, 'rollback', 'api', '--reason', 'import test'])\n"
        "except SystemExit as e:\n    assert e.code in (0, None), e.code\n"
        "heavy = sorted({m.split('.')[0] for m in sys.modules} & "
        "{'ansible', 'ansible_runner', 'pytest', '_pytest', 'testinfra', 'pydantic', "
        "'pydantic_core', 'yaml', 'tenacity', 'paramiko', 'rich', 'http', 'starlette', "
        "'uvicorn', 'jinja2', 'prometheus_client', 'psycopg'})\n"
        "assert 'orchestrator.web' not in sys.modules\n"
        "assert not heavy, heavy\n"
        f"main(['-c', {str(no_steps_config(lab))!r}, 'rollback', 'api', '--reason', 'back'])\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stderr


def test_rollback_never_uses_a_stale_config_snapshot(fresh_lab: Lab, tmp_path: Path) -> None:
    """Edit bluegreen.yml after the snapshot was taken: rollback validates the new bytes
    in full and refuses bad input (exit 2, field named) with traffic where it was."""
    lab = fresh_lab
    config = tmp_path / "bluegreen.yml"
    text = no_steps_config(lab).read_text()
    config.write_text(text)
    force_green(config, "api")  # so that a rollback has somewhere to go
    assert bluegreen(config, "status", "api").returncode == 0  # snapshot of the good file
    live = served_by(lab, "api")
    config.write_text(text.replace("drain_seconds: 5", "drain_seconds: -5"))
    proc = bluegreen(config, "rollback", "api", "--reason", "stale snapshot test")
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "router.drain_seconds" in proc.stderr and "fix:" in proc.stderr
    assert served_by(lab, "api") == live
    config.write_text(text.replace("drain_seconds: 5", "drain_seconds: 6"))  # valid, new
    proc = bluegreen(config, "rollback", "api", "--reason", "fresh snapshot test")
    assert proc.returncode == 0, proc.stderr
    assert served_by(lab, "api") != live


def test_plan_shows_changes_and_changes_nothing(fresh_lab: Lab) -> None:
    lab = fresh_lab
    config = no_steps_config(lab)
    before_versions = {h: versions(lab, h) for h in hosts_of(lab, "api", "green")}
    live_before = served_by(lab, "api")
    code, hist_before = bluegreen_json(config, "history")
    code, doc = bluegreen_json(config, "plan", "api")
    assert code == 0, doc
    standby = doc["standby"]
    assert standby != live_before
    for info in doc["hosts"].values():
        assert info["changes"]["demo-openssl"]["to"] == "3.0.15-1"
    assert any("set map" in c for c in doc["router_commands"])
    for h, v in before_versions.items():
        if standby == "green":
            assert versions(lab, h) == v
    assert served_by(lab, "api") == live_before
    assert bluegreen_json(config, "history")[1] == hist_before


def test_status_shows_what_the_load_balancer_counted_per_side(lab: Lab) -> None:
    config = no_steps_config(lab)
    code, before = bluegreen_json(config, "status", "api")
    assert code == 0, before
    live, standby = before["live"], before["standby"]
    url = lab.status()["frontends"]["api"] + "/"
    for _ in range(5):
        with urllib.request.urlopen(url, timeout=5) as r:
            assert r.status == 200
    code, after = bluegreen_json(config, "status", "api")
    assert code == 0, after
    seen, was = after["sides"][live]["traffic"], before["sides"][live]["traffic"]
    assert seen["responses"] >= was["responses"] + 5, (was, seen)
    assert seen["errors_5xx"] == was["errors_5xx"]
    assert after["sides"][standby]["traffic"] == before["sides"][standby]["traffic"]
    text = bluegreen(config, "status", "api").stdout
    assert "lb: " in text and " responses, " in text and " 5xx" in text, text
