"""A failed patch that changed no host (issue 22): Ansible's results and the package reads
must both say so; anything unsure keeps the side `patching`."""

from __future__ import annotations

from typing import Any

import pytest

from orchestrator.patching import PatchResult, SideChanges, SidePatch
from orchestrator.patching.changes import compare
from orchestrator.patching.events import Collector, escalation_refused
from orchestrator.patching.runner import _finish
from orchestrator.patching.untouched import why_untouched

HOSTS = ["b1", "b2"]
SNAP = {"demo-web": "1.0.0"}

# what Ansible 2.x reports when `sudo -n` refuses before the module starts
SUDO_PASSWORD = {"msg": "MODULE FAILURE\nSee stdout/stderr for the exact error",
                 "module_stdout": "", "module_stderr": "sudo: a password is required\n",
                 "rc": 1, "changed": False}
SUDO_UNKNOWN_USER = {"msg": "MODULE FAILURE\nSee stdout/stderr for the exact error",
                     "module_stdout": "", "rc": 1,
                     "module_stderr": "sudo: unknown user bg-nobody\nsudo: error initializing "
                                      "audit plugin sudoers_audit\n"}
MISSING_PASSWORD = {"msg": "Missing sudo password", "changed": False}
MODULE_CRASHED = {"msg": "MODULE FAILURE\nSee stdout/stderr for the exact error",
                  "module_stdout": "", "rc": 1,
                  "module_stderr": "Traceback (most recent call last):\n  File ...\n"}
APT_FAILED = {"msg": "'/usr/bin/apt-get -y install demo-web' failed: E: broken", "rc": 100,
              "changed": False}
UNREACHABLE = {"msg": "Failed to connect to the host via ssh: Host key verification failed.",
               "unreachable": True, "changed": False}


def run(events: list[tuple[str, str, str, dict[str, Any]]], *, status: str = "failed",
        before: dict[str, Any] | None = None, after: dict[str, Any] | None = None) -> SidePatch:
    """The side's patch as the runner would return it for these (kind, host, task, res);
    a task named "action: ..." has that task_action."""
    collector = Collector(None, check_mode=False)
    for kind, host, task, res in events:
        action = task.split(":", 1)[0] if ":" in task else ""
        collector({"event": kind, "event_data": {"host": host, "task": task, "res": res,
                                                 "task_action": action}})
    result = _finish(collector, HOSTS, "web", "blue", False, 2, status, 1.0, 60)
    both = dict.fromkeys(HOSTS, SNAP)
    changes = compare(both if before is None else before, both if after is None else after)
    return SidePatch(result, changes, None)


def failed_on_both(res: dict[str, Any]) -> list[tuple[str, str, str, dict[str, Any]]]:
    kind = "runner_on_unreachable" if res.get("unreachable") else "runner_on_failed"
    return [(kind, h, "Gathering Facts", res) for h in HOSTS]


@pytest.mark.parametrize("res", [SUDO_PASSWORD, SUDO_UNKNOWN_USER, MISSING_PASSWORD])
def test_sudo_refusing_on_every_host_changed_nothing(res: dict[str, Any]) -> None:
    assert escalation_refused(res)
    assert why_untouched(run(failed_on_both(res)), HOSTS) == (
        "b1, b2: sudo refused before any task ran")


@pytest.mark.parametrize("res", [MODULE_CRASHED, APT_FAILED, {"msg": "MODULE FAILURE",
                                                              "module_stdout": "{\"x\": 1}",
                                                              "module_stderr": "sudo: hm"}])
def test_a_task_that_started_may_have_changed_something(res: dict[str, Any]) -> None:
    assert not escalation_refused(res)
    assert why_untouched(run(failed_on_both(res)), HOSTS) is None


def test_unreachable_counts_only_when_the_package_read_agrees() -> None:
    unread = {"b1": "ssh: Host key verification failed", "b2": "ssh: Host key verification"}
    # bluegreen could not read them either (before and after): nothing ran on them
    assert why_untouched(run(failed_on_both(UNREACHABLE), before=unread, after=unread),
                         HOSTS) == "b1, b2: unreachable before any task ran"
    # read before and after, the same packages
    assert why_untouched(run(failed_on_both(UNREACHABLE)), HOSTS)
    # read after the playbook but not before: unknown, kept
    assert why_untouched(run(failed_on_both(UNREACHABLE), before=unread), HOSTS) is None


def test_anything_unsure_keeps_the_side_patching() -> None:
    sudo = failed_on_both(SUDO_PASSWORD)
    ok_first = [("runner_on_ok", "b1", "Gathering Facts", {"changed": False})]
    changed_then_failed = [("runner_on_failed", "b1", "t", {**APT_FAILED, "changed": True})]
    upgraded = {"b1": {"demo-web": "1.0.1"}, "b2": SNAP}
    assert why_untouched(run(ok_first + sudo[1:]), HOSTS) is None  # b1 ran a task
    assert why_untouched(run(changed_then_failed + sudo[1:]), HOSTS) is None
    assert why_untouched(run(sudo, after=upgraded), HOSTS) is None  # a package changed
    for status in ("timeout", "canceled", "successful"):
        assert why_untouched(run(sudo, status=status), HOSTS) is None
    assert why_untouched(run(sudo), ["b1", "b2", "b3"]) is None  # b3 has no result
    empty = SidePatch(PatchResult(False, 2, "failed", {}, 0.0), SideChanges(), None)
    assert why_untouched(empty, []) is None


def test_bluegreens_playbook_refused_by_sudo_in_its_raw_task() -> None:
    """playbooks/patch.yml: an assert (on the controller) passes, then the raw apt task runs
    whole under sudo, which refuses (what the lab shows with an unknown become user)."""
    raw = {"msg": "non-zero return code", "rc": 1, "changed": False, "stderr": "",
           "stdout": "sudo: unknown user bg-no-such-user\r\nsudo: error initializing audit "
                     "plugin sudoers_audit\r\n"}
    events = [("runner_on_ok", "b1", "ansible.builtin.assert: check input", {}),
              ("runner_on_failed", "b1", "ansible.builtin.raw: patch (apt)", raw)]
    assert why_untouched(run(events), HOSTS) == (
        "b1: sudo refused before any task ran; b2: the play never reached it")
    # the same output from a command task (its module started): unsure
    command = [events[0], ("runner_on_failed", "b1", "ansible.builtin.command: x", raw)]
    assert why_untouched(run(command), HOSTS) is None
    # a raw task that printed something else ran
    printed = {**raw, "stdout": raw["stdout"] + "Reading package lists...\r\n"}
    assert why_untouched(run([events[0], ("runner_on_failed", "b1", "raw: patch", printed)]),
                         HOSTS) is None
    # an ok raw task touched the host
    touched = [("runner_on_ok", "b1", "raw: x", {}), events[1]]
    assert why_untouched(run(touched), HOSTS) is None


def test_a_play_that_stopped_before_a_host_never_touched_it() -> None:
    only_b1 = [("runner_on_failed", "b1", "Gathering Facts", SUDO_PASSWORD)]
    assert why_untouched(run(only_b1), HOSTS) == (
        "b1: sudo refused before any task ran; b2: the play never reached it")


def test_an_ignored_failure_counts_as_a_task_that_ran() -> None:
    collector = Collector(None, check_mode=False)
    collector({"event": "runner_on_failed", "event_data": {
        "host": "b1", "task": "t", "ignore_errors": True, "res": SUDO_PASSWORD}})
    assert collector.hosts["b1"].ran
