"""Security: changed host keys are refused by every path, planted secrets appear nowhere,
state files are private, no shell anywhere, and the audit chain catches tampering."""

from __future__ import annotations

import ast
import dataclasses
import json
import os
import shutil
import sqlite3
import stat
import subprocess
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from orchestrator.lab.lab import Lab
from tests.reliability.helpers import WEB, fresh_web
from tests.support.cli import BLUEGREEN, bluegreen, bluegreen_json
from tests.support.lab import (
    assert_consistent,
    hosts_of,
    no_steps_config,
    router_live,
    served_by,
    versions,
)

pytestmark = [pytest.mark.lab]

REPO = Path(__file__).parents[2]
VULNERABLE = {"demo-openssl": "3.0.11-1", "demo-web": "1.0.0"}
SECRETS = {
    "ansible_become_password": "S3cr3t-become-7d1f0c",
    "db_token": "S3cr3t-token-a94be2",
    "vault_db_password": "S3cr3t-vault-5e3c18",
}
ENV_SECRET = ("DB_PASSWORD", "S3cr3t-env-0b7e44")
MARKER = b"S3cr3t-"


# ---- host keys ---------------------------------------------------------------------------
def _change_host_key(lab: Lab, host: str) -> None:
    lab.exec(
        host,
        [
            "sh",
            "-c",
            "rm -f /etc/ssh/ssh_host_*key* && ssh-keygen -q -A && systemctl restart ssh",
        ],
    )


@pytest.mark.destructive
def test_changed_host_key_is_refused_by_ansible_and_probes(lab: Lab) -> None:
    fresh_web(lab)
    config = no_steps_config(lab)
    try:
        _change_host_key(lab, "web-green-1")
        # probes (paramiko, RejectPolicy + our known_hosts)
        code, doc = bluegreen_json(config, "verify", WEB, "--side", "green")
        assert code == 3, doc
        bad = [r for r in doc["results"] if r["host"] == "web-green-1"]
        assert bad and all(r["status"] != "pass" for r in bad), bad
        assert any("key" in r["evidence"].lower() for r in bad), bad
        # Ansible's way (OpenSSH with Ansible's options, StrictHostKeyChecking=yes) and the
        # probes' (paramiko) both refuse it: `doctor` tries each as the rollout would
        code, checks = bluegreen_json(config, "doctor", WEB)
        assert code == 1, checks
        failed = {c["name"]: c for c in checks["checks"] if c["ok"] is False}
        assert {"ssh web-green-1", "ansible-ssh web-green-1"} <= set(failed), failed
        assert "mismatch" in failed["ssh web-green-1"]["detail"], failed
        # and the rollout stops in its precheck, before Ansible touches any host
        proc = bluegreen(config, "rollout", WEB, "--yes")
        assert proc.returncode == 1, proc.stderr
        assert "not ready, no host was touched" in proc.stderr, proc.stderr
        assert "web-green-1" in proc.stderr and "host key mismatch" in proc.stderr
        assert versions(lab, "web-green-1") == VULNERABLE
        assert router_live(lab, WEB) == "web_blue" and served_by(lab, WEB) == "blue"
        assert_consistent(lab, config)
    finally:
        lab.reset(hosts_of(lab, WEB, "green"))


def test_router_over_ssh_refuses_a_changed_key_is_covered() -> None:
    """The router's SSH transport (paramiko, RejectPolicy) is proven against a real sshd
    with a wrong known_hosts in tests/integration/test_router_haproxy.py."""
    text = (REPO / "tests" / "integration" / "test_router_haproxy.py").read_text()
    assert "wrong_known_hosts" in text and "host key mismatch" in text


# ---- secrets -----------------------------------------------------------------------------
def _secret_config(lab: Lab, tmp: Path) -> Path:
    inventory = lab.paths.inventory.read_text()
    anchor = f"              ansible_host: {lab.paths.subnet_prefix}.13\n"  # web-green-1
    assert anchor in inventory
    planted = "".join(f"              {k}: {v}\n" for k, v in SECRETS.items())
    inventory = inventory.replace(anchor, anchor + planted, 1)
    inventory = inventory.replace(
        "  vars:\n", f"  vars:\n    vault_api_key: {SECRETS['vault_db_password']}-group\n", 1
    )
    (tmp / "hosts.yml").write_text(inventory)
    config = no_steps_config(lab).read_text().replace(
        f"inventory: {lab.paths.inventory}", f"inventory: {tmp / 'hosts.yml'}"
    )
    (tmp / "bluegreen.yml").write_text(config)
    return tmp / "bluegreen.yml"


def _files_with_secret(roots: list[Path], skip: set[Path], since: float) -> list[str]:
    """Files under `roots` written since `since` (so: during the test) holding a secret.
    Older files (a checkout of this repository, other runs' temp dirs) are not ours."""
    found = []
    for root in roots:
        for dirpath, dirnames, filenames in os.walk(root):
            here = Path(dirpath)
            dirnames[:] = [d for d in dirnames if here / d not in skip]
            for name in filenames:
                path = here / name
                if path in skip:
                    continue
                try:
                    st = path.lstat()
                    if not stat.S_ISREG(st.st_mode) or st.st_size > 64 << 20:
                        continue
                    if st.st_mtime < since:
                        continue
                    if MARKER in path.read_bytes():
                        found.append(str(path))
                except OSError:
                    continue
    return found


@pytest.mark.destructive
def test_planted_secrets_appear_nowhere(lab: Lab, tmp_path: Path) -> None:
    started = time.time() - 1
    fresh_web(lab)
    secret_dir = tmp_path / "secret-inputs"
    secret_dir.mkdir()
    config = _secret_config(lab, secret_dir)
    env = {ENV_SECRET[0]: ENV_SECRET[1]}
    outputs = []
    rollout = bluegreen(config, "rollout", WEB, "--yes", env=env)
    outputs.append(rollout.stdout + rollout.stderr)
    assert rollout.returncode == 0, rollout.stderr
    for args in (
        ("status", WEB, "--json"),
        ("history", "--json", "--limit", "1000"),
        ("verify", WEB, "--side", "green", "--json"),
        ("rollback", WEB, "--reason", "secret test", "--json"),
        ("audit", "verify", "--json"),
    ):
        proc = bluegreen(config, *args, env=env)
        assert proc.returncode == 0, (args, proc.stderr)
        outputs.append(proc.stdout + proc.stderr)
    for text in outputs:
        assert MARKER.decode() not in text, text
    # files left on disk: the lab dir (state, reports, logs, every host's writable layer), /tmp
    roots = [lab.paths.root, Path("/tmp")]
    skip = {secret_dir, lab.paths.hosts}
    skip |= {lab.paths.hosts / h / "root" for h in os.listdir(lab.paths.hosts)}
    found = _files_with_secret(roots, skip, started)
    found += _files_with_secret(
        [lab.paths.hosts / h / "disk" / "upper" for h in os.listdir(lab.paths.hosts)], set(),
        started,
    )
    assert not found, f"secrets written to: {found}"


# ---- file modes --------------------------------------------------------------------------
def test_state_files_are_created_0600_whatever_the_umask(lab: Lab, tmp_path: Path) -> None:
    state = tmp_path / "fresh-state"
    reports = tmp_path / "reports"
    text = no_steps_config(lab).read_text()
    text = text.replace(f"  path: {lab.paths.root}/state/state.db", f"  path: {state}/state.db")
    text = text.replace(f"reports_dir: {lab.paths.root}/reports", f"reports_dir: {reports}")
    config = tmp_path / "bluegreen.yml"
    config.write_text(text)
    proc = subprocess.run(
        [*BLUEGREEN, "-c", str(config), "status", WEB, "--adopt", "--reason", "mode test"],
        capture_output=True,
        text=True,
        check=False,
        preexec_fn=lambda: os.umask(0o022),  # noqa: PLW1509 - the point of the test
    )
    assert proc.returncode == 0, proc.stderr
    assert stat.S_IMODE(state.stat().st_mode) == 0o700
    files = [p for p in state.iterdir() if p.is_file()]
    assert any(p.name == "state.db" for p in files)
    for p in files:
        assert stat.S_IMODE(p.stat().st_mode) & 0o077 == 0, f"{p} is {oct(p.stat().st_mode)}"
    for p in reports.rglob("*") if reports.exists() else []:
        if p.is_file():
            assert stat.S_IMODE(p.stat().st_mode) & 0o077 == 0, p
    for p in (lab.paths.root / "reports").rglob("*"):
        if p.is_file():
            assert stat.S_IMODE(p.stat().st_mode) & 0o077 == 0, p


# ---- no shell ----------------------------------------------------------------------------
def test_no_shell_anywhere_in_the_package() -> None:
    offenders = []
    for path in (REPO / "orchestrator").rglob("*.py"):
        tree = ast.parse(path.read_text(), filename=str(path))
        for node in ast.walk(tree):
            if not isinstance(node, ast.Call):
                continue
            func = ast.unparse(node.func)
            if func in (
                "os.system",
                "os.popen",
                "subprocess.getoutput",
                "subprocess.getstatusoutput",
            ):
                offenders.append(f"{path}:{node.lineno}: {func}")
            for kw in node.keywords:
                if kw.arg == "shell" and not (
                    isinstance(kw.value, ast.Constant) and kw.value.value is False
                ):
                    offenders.append(f"{path}:{node.lineno}: shell={ast.unparse(kw.value)}")
    assert not offenders, offenders


# ---- audit chain -------------------------------------------------------------------------
def _tamper(db: Path, how: str) -> None:
    from orchestrator.state.audit import record_hash
    from orchestrator.state.sql.rows import audit_from_row

    conn = sqlite3.connect(db)
    conn.row_factory = sqlite3.Row
    try:
        if how == "edited":
            conn.execute("UPDATE audit_log SET reason = 'nothing to see' WHERE seq = 2")
        elif how == "deleted-middle":
            conn.execute("DELETE FROM audit_log WHERE seq = 2")
        elif how == "deleted-last":
            conn.execute("DELETE FROM audit_log WHERE seq = (SELECT MAX(seq) FROM audit_log)")
        elif how == "inserted":
            # a well-formed record, correctly linked and hashed: only the head catches it
            last = conn.execute("SELECT * FROM audit_log ORDER BY seq DESC LIMIT 1").fetchone()
            forged = dataclasses.replace(audit_from_row(last), seq=last["seq"] + 1, reason="forged", prev_hash=last["hash"])
            forged = dataclasses.replace(forged, hash=record_hash(forged))
            cols = [k for k in last.keys()]  # noqa: SIM118 - sqlite3.Row
            values = dict(last)
            values.update(seq=forged.seq, reason="forged", prev_hash=last["hash"], hash=forged.hash)
            conn.execute(
                f"INSERT INTO audit_log ({', '.join(cols)}) VALUES ({', '.join('?' for _ in cols)})",
                [values[c] for c in cols],
            )
        elif how == "downgraded":  # issue 21: strip the MACs, edit, re-link, head key NULL
            from tests.support.attacks import downgrade_attack

            rows = conn.execute("SELECT * FROM audit_log ORDER BY seq").fetchall()
            downgrade_attack(lambda sql, params=(): conn.execute(sql, params),
                             [audit_from_row(r) for r in rows])
        elif how == "reordered":
            rows = {r["seq"]: dict(r) for r in conn.execute("SELECT * FROM audit_log")}
            a, b = rows[2], rows[3]
            for seq, row in ((2, b), (3, a)):
                sets = ", ".join(f"{k} = ?" for k in row if k != "seq")
                conn.execute(
                    f"UPDATE audit_log SET {sets} WHERE seq = ?",
                    [v for k, v in row.items() if k != "seq"] + [seq],
                )
        conn.commit()
    finally:
        conn.close()


def _audit_rows(db: Path) -> list[tuple[object, ...]]:
    with sqlite3.connect(db) as conn:
        return [*conn.execute("SELECT * FROM audit_log ORDER BY seq"),
                *conn.execute("SELECT * FROM audit_head")]


@pytest.mark.parametrize(
    "how", ["edited", "deleted-middle", "deleted-last", "inserted", "reordered", "downgraded"]
)
def test_audit_chain_detects_tampering(lab: Lab, tmp_path: Path, how: str) -> None:
    state = tmp_path / "state"
    text = no_steps_config(lab).read_text().replace(
        f"  path: {lab.paths.root}/state/state.db", f"  path: {state}/state.db"
    )
    config = tmp_path / "bluegreen.yml"
    config.write_text(text)
    for i in range(4):
        code, doc = bluegreen_json(config, "status", WEB, "--adopt", "--reason", f"record {i}")
        assert code == 0, doc
    code, doc = bluegreen_json(config, "audit", "verify")
    assert code == 0 and doc["ok"] and doc["count"] == 4, doc
    db = state / "state.db"
    # checkpoint the WAL so the edit lands in the main file, as an attacker's copy would
    with sqlite3.connect(db) as conn:
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    _tamper(db, how)
    code, doc = bluegreen_json(config, "audit", "verify")
    assert code == 1 and doc["ok"] is False, (how, doc)
    expected = {"edited": "edited", "deleted-middle": "deleted", "deleted-last": "truncated",
                "inserted": "inserted", "reordered": "reordered", "downgraded": "forged"}[how]
    assert doc["kind"] == expected, (how, doc)  # named, not just "broken"
    proc = bluegreen(config, "audit", "verify")
    assert proc.returncode == 1 and "audit chain broken" in proc.stderr, proc.stderr
    if how == "downgraded":  # never "not keyed yet"; the next command does not pin it
        assert "records 1..4 have no MAC" in proc.stderr and "not keyed yet" not in proc.stderr
        stored = _audit_rows(db)
        proc = bluegreen(config, "status", WEB, "--adopt", "--reason", "after the forgery")
        assert proc.returncode == 1 and "downgrade" in proc.stderr, proc.stderr
        assert _audit_rows(db) == stored
    shutil.rmtree(state)
    assert json.dumps(doc)  # the report is JSON-clean


# ---- secrets in free text, webhooks, a command router's stderr (issue 15) ----------------
ROUTER_SCRIPT = """#!/bin/sh
# a command router whose flips fail, telling too much on stderr
case "$1" in
  live) echo '{"live": "blue"}' ;;
  health) echo '{"servers": [{"name": "x", "status": "UP"}]}' ;;
  counters) echo '{"responses": 1, "errors_5xx": 0}' ;;
  flip)
    echo "connecting to https://admin:S3cr3t-url-pass-4411@lb.internal/api" >&2
    echo "db password=S3cr3t-literal-9c2d, env token $BLUEGREEN_LB_TOKEN" >&2
    echo "inventory secret $DB_PASSWORD" >&2
    exit 1 ;;
  *) echo '{"ok": true}' ;;
esac
"""


class _Hook:
    """A webhook receiver that keeps the raw bodies it gets."""

    def __init__(self) -> None:
        import threading
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

        bodies = self.bodies = []  # type: list[bytes]

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server API
                bodies.append(self.rfile.read(int(self.headers.get("Content-Length", 0))))
                self.send_response(204)
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


def test_router_stderr_webhook_tokens_and_env_secrets_appear_nowhere(
    lab: Lab, tmp_path: Path
) -> None:
    import yaml

    started = time.time() - 1
    env = {ENV_SECRET[0]: ENV_SECRET[1], "BLUEGREEN_LB_TOKEN": "S3cr3t-lb-token-e71a"}
    script = tmp_path / "router.sh"
    script.write_text(ROUTER_SCRIPT)
    script.chmod(0o755)
    doc = yaml.safe_load(no_steps_config(lab).read_text())
    doc["state"]["path"] = str(tmp_path / "state" / "state.db")
    doc["reports_dir"] = str(tmp_path / "reports")
    doc["audit"]["witness"]["file"] = str(tmp_path / "witness.log")
    doc["router"] = {"kind": "command", "script": str(script), "counters": True,
                     "confirm_header": None}
    config = tmp_path / "bluegreen.yml"
    config.write_text(yaml.safe_dump(doc))
    hook = _Hook()
    try:
        outputs = []
        # a forced flip (a fresh store's rollback has no earlier flip: it calls no script)
        proc = bluegreen(config, "flip", WEB, "--to", "green", "--force", "--reason",
                         "INC-7 router", env=env)
        assert proc.returncode == 1 and "router script" in proc.stderr, proc.stderr
        assert "<redacted>" in proc.stderr  # said, without the values
        outputs.append(proc.stdout + proc.stderr)
        # a campaign whose window is closed: stored, deferred, webhooks called, no patching
        later = datetime.now(UTC) + timedelta(hours=1)
        campaign = tmp_path / "secret.yml"
        campaign.write_text(yaml.safe_dump({
            "name": "secret-hooks",
            "advisories": [{"id": "DEMO-1", "packages": {"demo-web": "1.0.1"}}],
            "waves": [{"services": [WEB]}],
            "window": {"intervals": [{"start": later.isoformat(),
                                      "end": (later + timedelta(hours=1)).isoformat()}]},
            "notify": {"webhooks": [
                f"http://127.0.0.1:{hook.port}/hooks/S3cr3t-path-token-77aa?key=S3cr3t-q-1b"
            ]},
        }))
        for args in (("campaign", "run", str(campaign), "--yes"),
                     ("campaign", "resume", "secret-hooks")):
            proc = bluegreen(config, *args, "--json", env=env)
            assert proc.returncode == 6, proc.stdout + proc.stderr  # deferred
            outputs.append(proc.stdout + proc.stderr)
        for args in (("history", "--json", "--limit", "1000"), ("campaign", "status", "--json"),
                     ("report", "secret-hooks", "--format", "json"),
                     ("report", "secret-hooks", "--format", "html")):
            proc = bluegreen(config, *args, env=env)
            assert proc.returncode == 0, (args, proc.stderr)
            outputs.append(proc.stdout + proc.stderr)
        for text in outputs:
            assert MARKER.decode() not in text, text
        history = json.loads(outputs[3])
        stored = [r for r in history if r["command"] == "run.create"][-1]["after"]["params"]
        assert stored["campaign"]["notify"]["webhooks"] == [f"http://127.0.0.1:{hook.port}/…"]
        # wherever the router's message is kept (the kernel's failed-flip record), it is
        # kept redacted
        for record in history:
            if "router script" in json.dumps(record):
                assert "<redacted>" in json.dumps(record), record
        deadline = time.monotonic() + 10
        while len(hook.bodies) < 4 and time.monotonic() < deadline:  # run + resume
            time.sleep(0.1)
        assert len(hook.bodies) >= 4, hook.bodies  # the resume called the hook again
        for body in hook.bodies:
            assert MARKER not in body, body
            assert b"audit_head" in body
    finally:
        hook.server.shutdown()
        hook.server.server_close()
    found = _files_with_secret([tmp_path, lab.paths.root],
                               {script, campaign, config, lab.paths.hosts}, started)
    assert not found, f"secrets written to: {found}"


FAILING_PLAYBOOK = """- hosts: all
  gather_facts: false
  tasks:
    - name: refuse, saying too much
      ansible.builtin.fail:
        msg: "cannot patch {{ inventory_hostname }}: token={{ db_token | default('-') }}
          become {{ ansible_become_password | default('-') }} vault {{ vault_api_key }}"
"""


def test_ansible_failure_echoing_inventory_secrets_appears_nowhere(
    lab: Lab, tmp_path: Path
) -> None:
    """The play fails with a message holding the inventory's secret values (host and group
    vars): the failure is reported (exit 1, host named), the values nowhere."""
    import yaml

    started = time.time() - 1
    secret_dir = tmp_path / "secret-inputs"
    secret_dir.mkdir()
    config = _secret_config(lab, secret_dir)
    playbook = secret_dir / "fail.yml"
    playbook.write_text(FAILING_PLAYBOOK)
    doc = yaml.safe_load(config.read_text())
    doc["state"]["path"] = str(tmp_path / "state" / "state.db")  # the lab's store stays as is
    doc["audit"]["witness"]["file"] = str(tmp_path / "witness.log")
    doc["services"][WEB]["patch"]["playbook"] = str(playbook)
    config.write_text(yaml.safe_dump(doc))
    proc = bluegreen(config, "rollout", WEB, "--yes", "--json")
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "web-green-1" in proc.stdout + proc.stderr and "<redacted>" in proc.stdout + proc.stderr
    outputs = [proc.stdout + proc.stderr]
    for args in (("history", "--json", "--limit", "1000"), ("status", WEB, "--json")):
        shown = bluegreen(config, *args)
        outputs.append(shown.stdout + shown.stderr)
    for text in outputs:
        assert MARKER.decode() not in text, text
    found = _files_with_secret([lab.paths.root, Path("/tmp")],
                               {secret_dir, lab.paths.hosts}, started)
    assert not found, f"secrets written to: {found}"
