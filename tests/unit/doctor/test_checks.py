"""`bluegreen doctor`'s checks on fakes: the router's (FakeRouter, a loopback frontend with
and without the confirm header), the hosts' fix lines, the state store and the witness,
the precheck's use of them, and the CLI's table, JSON and exit codes."""

from __future__ import annotations

import json
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from orchestrator.cli.app import main
from orchestrator.config.loaded import load_config
from orchestrator.doctor.hosts import _openssh_reason, _paramiko, fix_for
from orchestrator.doctor.local import store_check, witness_checks
from orchestrator.doctor.report import Report, first_failure
from orchestrator.doctor.routing import router_checks
from orchestrator.errors import BluegreenError
from orchestrator.patching.ssh import Output
from orchestrator.probes.base import ProbeTarget
from orchestrator.rollout.runner import Rollout
from orchestrator.routers.base import Check
from orchestrator.testing import FakeRouter, fake_config, fake_tools, temp_store
from tests.support.loopback_http import serving


@pytest.fixture
def frontend() -> Iterator[dict[str, Any]]:
    """A loopback HTTP frontend; `state["header"]`: the X-Bluegreen-Backend it sets."""
    state: dict[str, Any] = {"header": "web_blue"}

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 - http.server's name
            self.send_response(200)
            if state["header"] is not None:
                self.send_header("X-Bluegreen-Backend", state["header"])
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *_args: Any) -> None:
            """Quiet."""

    with serving(Handler) as url:
        state["url"] = url
        yield state


def haproxy_config(tmp_path: Path, url: str) -> Any:
    (tmp_path / "hosts.yml").write_text("all: {}\n")
    (tmp_path / "known_hosts").write_text("")
    (tmp_path / "bluegreen.yml").write_text(json.dumps({
        "version": 1, "inventory": "hosts.yml", "ssh": {"known_hosts": "known_hosts"},
        "router": {"kind": "haproxy", "socket": "/nonexistent/admin.sock", "map_file": "/m",
                   "server_state_file": "/s", "frontends": {"web": url}},
        "services": {"web": {"sides": {"blue": "web_blue", "green": "web_green"},
                             "patch": {"packages": [{"name": "demo-web"}]}}}}))
    return load_config(tmp_path / "bluegreen.yml")


def test_router_checks_pass_and_name_what_is_wrong(tmp_path: Path,
                                                   frontend: dict[str, Any]) -> None:
    config = haproxy_config(tmp_path, frontend["url"])
    router = FakeRouter()
    checks = {c.name: c for c in router_checks(config, router, ["web"])}
    assert all(c.ok for c in checks.values()), checks
    assert "X-Bluegreen-Backend: web_blue (the live backend)" in checks["confirm header web"].detail

    frontend["header"] = None  # the frontend lost `http-response set-header ... %b`
    check = {c.name: c for c in router_checks(config, router, ["web"])}["confirm header web"]
    assert check.failed and "has no X-Bluegreen-Backend header" in check.detail
    assert "http-response set-header X-Bluegreen-Backend %b" in check.fix

    frontend["header"] = "shop_blue"  # another service's frontend
    check = {c.name: c for c in router_checks(config, router, ["web"])}["confirm header web"]
    assert check.failed and "served by shop_blue, but the live backend is web_blue" in check.detail

    router.down.add(("web", "green"))
    checks = {c.name: c for c in router_checks(config, router, ["web"])}
    assert checks["backend web green"].failed
    assert "has no server UP" in checks["backend web green"].detail
    # the precheck: the standby's servers may be down (the patch may heal them)
    assert not any(c.failed for c in router_checks(config, router, ["web"], standby_up=False)
                   if c.name.startswith("backend"))

    router.unreachable = True
    checks = {c.name: c for c in router_checks(config, router, ["web"])}
    assert checks["live web"].failed and "admin socket is gone" in checks["live web"].detail


def test_fix_lines_name_the_known_hosts_entry_looked_up() -> None:
    t = ProbeTarget("web-green-1", "10.0.0.7", "/etc/bg/known_hosts", port=2222, user="deploy")
    assert t.known_hosts_name == "[10.0.0.7]:2222"
    assert "ssh-keyscan -p 2222 10.0.0.7 >> /etc/bg/known_hosts" in fix_for("host-key", t)
    assert "looked up by the connect address (ansible_host)" in fix_for("host-key", t)
    assert "replace the `[10.0.0.7]:2222` line" in fix_for("host-key-changed", t)
    assert "for deploy on web-green-1" in fix_for("auth", t)
    unknown = Output(255, "", "No ED25519 host key is known for 10.0.0.7 and you have "
                     "requested strict checking.\r\nHost key verification failed.\r\n")
    assert _openssh_reason(unknown) == "host-key"
    assert _openssh_reason(Output(255, "", "WARNING: REMOTE HOST IDENTIFICATION HAS CHANGED!"
                                  )) == "host-key-changed"
    assert _openssh_reason(Output(255, "", "deploy@10.0.0.7: Permission denied (publickey)."
                                  )) == "auth"
    assert _openssh_reason(Output(255, "", "connect to host 10.0.0.7 port 22: Connection "
                                  "refused")) == "unreachable"


def test_an_unreachable_host_fails_its_ssh_check_with_the_fix(tmp_path: Path) -> None:
    import socket

    with socket.socket() as sock:  # a loopback port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    (tmp_path / "known_hosts").write_text("")
    target = ProbeTarget("h1", "127.0.0.1", str(tmp_path / "known_hosts"), port=port,
                         connect_timeout=1.0)
    (check,) = _paramiko(target)
    assert check.name == "ssh h1" and check.failed
    assert f"127.0.0.1:{port}" in check.detail and "can be reached from here" in check.fix


def test_state_store_and_witness(tmp_path: Path) -> None:
    config = fake_config(tmp_path)
    assert store_check(config).ok is True
    # the fake's witness: syslog off? then a file or nothing; make one that cannot be opened
    witness = witness_checks(config)
    assert witness and all(c.ok is not False or c.fix for c in witness)
    doc = json.loads((tmp_path / "bluegreen.yml").read_text())
    doc["audit"] = {"witness": {"syslog": "tcp://127.0.0.1:9", "file": str(tmp_path / "no" / "w")}}
    (tmp_path / "bluegreen.yml").write_text(json.dumps(doc))
    checks = {c.name: c for c in witness_checks(load_config(tmp_path / "bluegreen.yml"))}
    assert checks["witness syslog"].failed and "tcp://127.0.0.1:9" in checks["witness syslog"].detail
    assert checks["witness file"].failed and "cannot append to" in checks["witness file"].detail
    doc["audit"] = {"witness": {"syslog": "off"}}
    (tmp_path / "bluegreen.yml").write_text(json.dumps(doc))
    (none,) = witness_checks(load_config(tmp_path / "bluegreen.yml"))
    assert none.ok is None and "audit.witness.file" in none.fix
    doc["state"] = {"path": "/proc/no/state.db"}
    (tmp_path / "bluegreen.yml").write_text(json.dumps(doc))
    assert store_check(load_config(tmp_path / "bluegreen.yml")).failed


def test_report_and_first_failure() -> None:
    report = Report([Check("a", True, "fine"), Check("b", False, "broken", "mend it"),
                     Check("c", None, "?"), Check("d", False, "also")])
    assert not report.ok and [c.name for c in report.failures] == ["b", "d"]
    assert report.as_dict()["failed"] == 2 and report.as_dict()["unknown"] == 1
    assert first_failure(report.checks) == "b: broken (and 1 more: d)"
    assert Report([Check("a", True, ""), Check("c", None, "")]).ok


def test_the_precheck_stops_before_any_host_is_touched_with_the_fix(tmp_path: Path) -> None:
    config = fake_config(tmp_path)
    tools = fake_tools()
    tools.readiness = lambda *_a: [
        Check("ssh web-green-1", True, "fine"),
        Check("router socket level", False, "admin.sock is at level 'operator'",
              "write `level admin` on the `stats socket` line of haproxy.cfg")]
    with temp_store(tmp_path) as store:
        rollout = Rollout(config, store, FakeRouter(), actor="t", tools=tools)
        with pytest.raises(BluegreenError) as info:
            rollout.start("web")
        assert "not ready, no host was touched: router socket level" in info.value.message
        assert (info.value.hint or "").startswith("write `level admin`")
        assert "bluegreen doctor web" in (info.value.hint or "")
        assert tools.patch.calls == []  # type: ignore[attr-defined]
        assert store.get_side("web", "green") is None or \
            store.get_side("web", "green").state == "untouched"  # type: ignore[union-attr]


def test_doctor_cli_table_json_and_exit_codes(tmp_path: Path) -> None:
    config = fake_config(tmp_path)
    (tmp_path / "hosts.yml").write_text(
        "all:\n  children:\n    web_blue: {hosts: {b1: {ansible_host: 127.0.0.1, "
        "ansible_port: 1}}}\n    web_green: {hosts: {g1: {ansible_host: 127.0.0.2, "
        "ansible_port: 1}}}\n")
    runner = CliRunner()
    path = str(config.path)
    bad = runner.invoke(main, ["-c", path, "doctor", "nosuch"])
    assert bad.exit_code == 2, bad.output
    out = runner.invoke(main, ["-c", path, "doctor", "web", "--json"])
    assert out.exit_code == 1, out.output
    doc = json.loads(out.stdout)
    names = {c["name"]: c for c in doc["checks"]}
    assert names["state store"]["ok"] is True
    assert names["ssh b1"]["ok"] is False and names["ssh b1"]["fix"]
    assert names["live web"]["ok"] is False  # the fake's command router is /bin/false
    text = runner.invoke(main, ["-c", path, "doctor", "web"])
    assert text.exit_code == 1
    assert "FAIL  ssh b1" in text.stdout and "fix: check that b1 is up" in text.stdout


def test_plan_marks_the_router_commands_failing_when_the_router_says_why(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import orchestrator.patching
    from orchestrator.patching.results import HostPatchResult, PatchResult
    from orchestrator.rollout.plan import plan_rollout

    config = fake_config(tmp_path)
    monkeypatch.setattr(orchestrator.patching, "patch_hosts", lambda *_a, **_k: PatchResult(
        True, 0, "successful", {"g1": HostPatchResult(ok=True, reached=True)}, 0.1))

    class OperatorRouter(FakeRouter):
        def readiness(self, services: list[str]) -> list[Check]:
            return [Check("router socket level", False, "admin.sock is at level 'operator'",
                          "write `level admin` on the `stats socket` line")]

    plan = plan_rollout(config, OperatorRouter(), "web")
    assert not plan.ok and [c.name for c in plan.router_problems] == ["router socket level"]
    assert "the flip would fail: router socket level" in (plan.message or "")
    assert plan.as_dict()["router_problems"][0]["fix"].startswith("write `level admin`")
    assert plan_rollout(config, FakeRouter(), "web").ok  # no readiness: nothing to mark


def test_writability_on_a_remote_load_balancer_is_checked_there(tmp_path: Path) -> None:
    """The script the SSH transport runs on the load balancer, run here through `sh`."""
    import subprocess

    from orchestrator.routers.haproxy.readiness import _unwritable_remote
    from orchestrator.routers.haproxy.ssh_transport import SSHTransport

    class Local(SSHTransport):
        def __init__(self) -> None:
            self.description = "ssh://lb"

        def _exec(self, remote_command: str, stdin_data: bytes) -> tuple[int, bytes, bytes]:
            proc = subprocess.run(["sh", "-c", remote_command], capture_output=True,
                                  timeout=10, check=False)
            return proc.returncode, proc.stdout, proc.stderr

    (tmp_path / "ok").mkdir()
    problems = _unwritable_remote(Local(), [str(tmp_path / "ok" / "bg.map"),
                                            str(tmp_path / "gone" / "state")])
    assert problems == [f"{tmp_path / 'gone' / 'state'}: no directory {tmp_path / 'gone'}"]
