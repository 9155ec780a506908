"""Reading ansible-runner events of playbooks/patch.yml (and of any playbook)."""

from __future__ import annotations

from typing import Any

from orchestrator.patching.events import Collector

APT_OUTPUT = (
    "BLUEGREEN-REFRESHED\r\n"
    "BLUEGREEN-CHANGED demo-openssl 3.0.11-1 3.0.15-1\r\n"
    "RESTARTED demo-web.service\r\n"
    "VERSION demo-openssl 3.0.15-1 ii \r\n"
    "VERSION demo-gone 1.0 rc \r\n"
)


def event(kind: str, task: str, res: dict[str, Any], host: str = "h1") -> dict[str, Any]:
    return {"event": kind, "event_data": {"host": host, "task": task, "res": res}}


def test_reads_the_report_lines_of_the_apt_task() -> None:
    c = Collector(None, check_mode=False)
    c(event("runner_on_ok", "bluegreen: patch (apt)", {"changed": True, "stdout": APT_OUTPUT}))
    h = c.hosts["h1"]
    assert h.changed and h.reached
    assert h.versions == {"demo-openssl": "3.0.15-1"}
    assert h.restarted == ["demo-web.service"]


def test_a_failed_raw_task_gives_its_output_as_the_reason() -> None:
    c = Collector(None, check_mode=False)
    res = {
        "msg": "non-zero return code",
        "rc": 1,
        "stderr": "Shared connection to 10.0.0.1 closed.\r\n",
        "stdout": "BLUEGREEN-REFRESHED\r\nnot available from any configured apt source after"
        " apt-get update: demo-openssl=9.9.9-1\r\n",
    }
    c(event("runner_on_failed", "bluegreen: patch (apt)", res))
    h = c.hosts["h1"]
    assert h.failed_task == "bluegreen: patch (apt)"
    assert h.message is not None
    assert "demo-openssl=9.9.9-1" in h.message and "(rc 1)" in h.message
    assert "Shared connection" not in h.message


def test_check_mode_reads_apt_simulation() -> None:
    c = Collector(None, check_mode=True)
    out = "Inst demo-openssl [3.0.11-1] (3.0.15-1 localhost [all])\r\nVERSION demo-openssl 3.0.11-1 ii\r\n"
    c(event("runner_on_ok", "bluegreen: patch (apt)", {"changed": False, "stdout": out}))
    change = c.hosts["h1"].would_change["demo-openssl"]
    assert (change.current, change.new) == ("3.0.11-1", "3.0.15-1")
