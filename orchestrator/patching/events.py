"""ansible-runner events -> per-host results and progress callbacks.

Reads the stable markers of playbooks/patch.yml (the task "bluegreen: report" and its
`bluegreen_patch_report`), and for any playbook: per-host ok/changed/failed/unreachable with
the module's own reason, redacted of anything that looks like a secret.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Mapping
from typing import Any

from orchestrator.patching.results import HostPatchResult, PackageChange, PatchProgress
from orchestrator.secrets import redact_text

log = logging.getLogger(__name__)

#: Tasks of playbooks/patch.yml whose output holds its report lines (stable markers):
#: `VERSION name version status`, `RESTARTED unit`.
REPORT_TASKS = frozenset({"bluegreen: patch (apt)", "bluegreen: restart and report (dnf)"})
#: A playbook of one's own may instead end with a debug task of this name that shows this
#: variable: {versions: {pkg: version}, restarted: [unit...]}.
REPORT_TASK = "bluegreen: report"
REPORT_VAR = "bluegreen_patch_report"

_MESSAGE_LIMIT = 600

redact = redact_text
"""Failure messages are redacted by the one policy of `orchestrator.secrets`."""

def shorten(text: str, limit: int = _MESSAGE_LIMIT) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[: limit - 3] + "..."


def _tail(text: Any, lines: int = 3) -> str:
    if not isinstance(text, str) or not text.strip():
        return ""
    kept = [ln for ln in text.strip().splitlines() if ln.strip()][-lines:]
    return " / ".join(ln.strip() for ln in kept)


CONTROLLER_ONLY = frozenset({"assert", "debug", "set_fact", "fail", "meta", "pause",
                             "include_vars", "add_host", "group_by", "set_stats"})
"""Actions that run on the controller only: an ok result of one never touched the host."""

_BECOME_FAILED = ("Missing sudo password", "Incorrect sudo password",
                  "waiting for privilege escalation prompt")


def escalation_refused(res: Mapping[str, Any], action: str = "") -> bool:
    """True when a failed task's result says sudo refused before the task started: Ansible's
    own become errors; a "MODULE FAILURE" with no module output whose stderr is only sudo's
    (`sudo: a password is required`, `sudo: unknown user ...`); a `raw` task (run whole
    under sudo) that exited 1 having printed only sudo's lines. A module that started and
    failed answers with its own JSON, or a traceback: never this."""
    msg = str(res.get("msg") or "")
    if any(text in msg for text in _BECOME_FAILED):
        return True
    if msg.startswith("MODULE FAILURE") and not str(res.get("module_stdout") or "").strip():
        return _only_sudo(res.get("module_stderr"))
    if action == "raw" and msg == "non-zero return code" and res.get("rc") == 1:
        return _only_sudo(res.get("stdout")) and _only_sudo(res.get("stderr"), empty=True)
    return False


def _only_sudo(text: Any, *, empty: bool = False) -> bool:
    lines = [line.strip() for line in str(text or "").splitlines()
             if line.strip() and not line.strip().startswith("Shared connection to ")]
    return (empty or bool(lines)) and all(line.startswith("sudo: ") for line in lines)


def _failure_text(res: Mapping[str, Any]) -> str:
    """The module's reason for a failure: msg plus the tail of stderr (or stdout)."""
    parts: list[str] = []
    msg = res.get("msg")
    if isinstance(msg, str) and msg.strip():
        parts.append(msg.strip())
    elif msg is not None:
        parts.append(str(msg))
    detail = _tail(res.get("stderr")) or _tail(res.get("module_stderr"))
    if detail.startswith("Shared connection to "):
        detail = ""  # ssh's own goodbye on a tty (raw tasks), not the reason
    # a raw/command task's reason is in its output (a tty merges stderr into stdout)
    if not detail and (not parts or msg == "non-zero return code"):
        detail = _tail(res.get("stdout")) or _tail(res.get("module_stdout"))
        if detail and msg == "non-zero return code":
            parts = []  # the output says why; "(rc N)" follows
    if detail and detail not in " ".join(parts):
        parts.append(detail)
    rc = res.get("rc")
    if isinstance(rc, int) and rc != 0 and "return code" not in " ".join(parts):
        parts.append(f"(rc {rc})")
    return shorten(redact(": ".join(parts) if parts else "no reason given by the module"))


# `apt-get -s` / apt module check mode: "Inst demo-openssl [3.0.11-1] (3.0.15-1 repo [amd64])"
_APT_INST_RE = re.compile(r"^Inst (\S+) (?:\[([^\]]+)\] )?\((\S+)", re.M)


def _planned_changes(res: Mapping[str, Any]) -> dict[str, PackageChange]:
    texts: list[str] = []
    stdout = res.get("stdout")
    if isinstance(stdout, str):
        texts.append(stdout)
    diff = res.get("diff")
    if isinstance(diff, Mapping) and isinstance(diff.get("prepared"), str):
        texts.append(diff["prepared"])
    found: dict[str, PackageChange] = {}
    for text in texts:
        for m in _APT_INST_RE.finditer(text):
            name = m.group(1).split(":", 1)[0]  # drop ":amd64"
            found[name] = PackageChange(name=name, current=m.group(2), new=m.group(3))
    return found


# ------------------------------------------------------------------------------ the run



class Collector:
    """Turns runner events into per-host results and progress callbacks. Runs on the
    runner's thread: it only updates dicts and calls the user's callback."""

    def __init__(self, on_event: Callable[[PatchProgress], None] | None, check_mode: bool) -> None:
        self.on_event = on_event
        self.check_mode = check_mode
        self.hosts: dict[str, HostPatchResult] = {}
        self.stats: dict[str, dict[str, int]] = {}

    def _host(self, name: str) -> HostPatchResult:
        h = self.hosts.get(name)
        if h is None:
            h = self.hosts[name] = HostPatchResult()
        h.reached = True
        return h

    def _emit(self, progress: PatchProgress) -> None:
        if self.on_event is None:
            return
        try:
            self.on_event(progress)
        except Exception:  # a broken progress display must not break the patch run
            log.exception("patch progress callback failed")

    def __call__(self, event: Mapping[str, Any]) -> bool:
        try:
            self._handle(event)
        except Exception:  # never let a parsing surprise stop the event stream
            log.exception("cannot read an ansible-runner event")
        return True  # keep the event (runner.events / stats stay complete)

    def _handle(self, event: Mapping[str, Any]) -> None:
        kind = event.get("event")
        data = event.get("event_data") or {}
        if not isinstance(data, Mapping):
            return
        task = data.get("task")
        task = str(task) if task else None
        if kind == "playbook_on_task_start":
            self._emit(PatchProgress(None, task, "started", None))
            return
        if kind == "playbook_on_stats":
            for key in ("ok", "changed", "failures", "dark", "skipped", "rescued", "ignored"):
                value = data.get(key)
                if isinstance(value, Mapping):
                    self.stats[key] = {str(k): int(v) for k, v in value.items()}
            return
        host_name = data.get("host")
        if not host_name or kind not in (
            "runner_on_ok",
            "runner_on_failed",
            "runner_on_unreachable",
            "runner_on_skipped",
        ):
            return
        host = self._host(str(host_name))
        res = data.get("res")
        res = res if isinstance(res, Mapping) else {}

        action = str(data.get("task_action") or "").rsplit(".", 1)[-1]
        if bool(res.get("changed")):
            host.changed = True  # also a failed task's (it may have changed before failing)
        if kind == "runner_on_ok":
            host.ran = host.ran or action not in CONTROLLER_ONLY
            changed = bool(res.get("changed"))
            if self.check_mode:
                host.would_change.update(_planned_changes(res))
            if task in REPORT_TASKS:
                self._read_lines(host, res.get("stdout"))
            elif task == REPORT_TASK:
                self._read_report(host, res.get(REPORT_VAR))
            status = "changed" if changed else "ok"
            self._emit(PatchProgress(str(host_name), task, status, None))
        elif kind == "runner_on_failed":
            if data.get("ignore_errors"):
                host.ran = host.ran or action not in CONTROLLER_ONLY
                self._emit(PatchProgress(str(host_name), task, "ok", "failed (ignored)"))
                return
            reason = _failure_text(res)
            if host.failed_task is None:
                host.failed_task = task
                host.message = f"{host_name}: task {task!r} failed: {reason}"
                host.escalation_refused = escalation_refused(res, action)
            self._emit(PatchProgress(str(host_name), task, "failed", reason))
        elif kind == "runner_on_unreachable":
            reason = _failure_text(res)
            host.unreachable = True
            if host.failed_task is None:
                host.failed_task = task
                host.message = f"{host_name}: unreachable during task {task!r}: {reason}"
            self._emit(PatchProgress(str(host_name), task, "unreachable", reason))
        else:
            self._emit(PatchProgress(str(host_name), task, "skipped", None))

    @staticmethod
    def _read_lines(host: HostPatchResult, stdout: Any) -> None:
        if not isinstance(stdout, str):
            return
        for line in stdout.splitlines():
            f = line.strip().split()
            if len(f) >= 4 and f[0] == "VERSION" and f[3].startswith("ii"):
                host.versions[f[1]] = f[2]
            elif len(f) == 2 and f[0] == "RESTARTED":
                host.restarted.append(f[1])

    @staticmethod
    def _read_report(host: HostPatchResult, report: Any) -> None:
        if not isinstance(report, Mapping):
            return
        versions = report.get("versions")
        if isinstance(versions, Mapping):
            host.versions = {str(k): str(v) for k, v in versions.items()}
        restarted = report.get("restarted")
        if isinstance(restarted, list):
            host.restarted = [str(u) for u in restarted]
