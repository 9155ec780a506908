"""Patch one side of a service with Ansible (`playbooks/patch.yml`) through ansible-runner.

`patch_hosts()` runs the service's patch playbook against the side's inventory group and turns
the runner's events into `PatchProgress` callbacks and one `PatchResult` with a line per host:
ok/changed, the failed task and why, unreachable, installed versions, restarted services and
(in check mode) the packages that would change.

Safety rules (see /work/shared/PITFALLS.md, ansible-runner):
- ansible-runner is imported lazily: importing this module stays cheap.
- a fresh private_data_dir per run (mode 0700, removed afterwards), `suppress_env_files=True`;
- host keys are always checked against the configured known_hosts, whatever the inventory or
  the caller's environment says (`ANSIBLE_SSH_ARGS` comes first on the ssh command line, and
  ssh keeps the first value of an option);
- SSH control sockets live in the run's private directory, so a master connection of an
  earlier run (made with other host keys) is never reused;
- the runner's `starting` status payload and the environment are never logged or returned;
  failure messages are redacted of anything that looks like a secret.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import sys
import tempfile
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from orchestrator.config.loaded import LoadedConfig
from orchestrator.config.models import PackageSpec
from orchestrator.errors import BadInput, PatchFailed
from orchestrator.secrets import redact_text as redact  # the one redaction policy
from orchestrator.sides import SIDES, Side

__all__ = [
    "HostPatchResult",
    "PackageChange",
    "PatchProgress",
    "PatchResult",
    "patch_hosts",
    "redact",
]

log = logging.getLogger(__name__)

#: Task names of playbooks/patch.yml the wrapper reads (stable markers).
REPORT_TASK = "bluegreen: report"
REPORT_VAR = "bluegreen_patch_report"
_CACHE_TASK = "bluegreen: refresh apt cache"
# Tasks whose "changed" does not mean the host's packages or services changed.
_NOT_A_CHANGE = frozenset({_CACHE_TASK})

_MESSAGE_LIMIT = 600
_SSH_CONTROL_PERSIST = "15s"

# ------------------------------------------------------------------------------ results


@dataclass(frozen=True)
class PatchProgress:
    """One step of a run: a task started (host None) or a task finished on a host.

    status: "started", "ok", "changed", "failed", "unreachable", "skipped".
    """

    host: str | None
    task: str | None
    status: str
    message: str | None = None


@dataclass(frozen=True)
class PackageChange:
    """A package a check-mode run would install or upgrade (`current` None: not installed)."""

    name: str
    current: str | None
    new: str


@dataclass
class HostPatchResult:
    """What happened on one host."""

    ok: bool = False
    changed: bool = False
    failed_task: str | None = None
    message: str | None = None
    unreachable: bool = False
    versions: dict[str, str] = field(default_factory=dict)
    restarted: list[str] = field(default_factory=list)
    #: check mode: the packages the run would change on this host
    would_change: dict[str, PackageChange] = field(default_factory=dict)
    #: False when the play never reached the host (e.g. it stopped after an earlier batch)
    reached: bool = False


@dataclass
class PatchResult:
    """The whole run. `status`: successful, failed, timeout, canceled."""

    ok: bool
    rc: int
    status: str
    hosts: dict[str, HostPatchResult]
    seconds: float
    service: str = ""
    side: str = ""
    check_mode: bool = False
    message: str | None = None

    def failures(self) -> list[str]:
        """One line per host that did not patch cleanly."""
        return [
            f"{name}: {h.message or 'failed'}" for name, h in sorted(self.hosts.items()) if not h.ok
        ]


# ------------------------------------------------------------------------------ messages


def _shorten(text: str, limit: int = _MESSAGE_LIMIT) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[: limit - 3] + "..."


def _tail(text: Any, lines: int = 3) -> str:
    if not isinstance(text, str) or not text.strip():
        return ""
    kept = [ln for ln in text.strip().splitlines() if ln.strip()][-lines:]
    return " / ".join(ln.strip() for ln in kept)


def _failure_text(res: Mapping[str, Any]) -> str:
    """The module's reason for a failure: msg plus the tail of stderr (or stdout)."""
    parts: list[str] = []
    msg = res.get("msg")
    if isinstance(msg, str) and msg.strip():
        parts.append(msg.strip())
    elif msg is not None:
        parts.append(str(msg))
    detail = _tail(res.get("stderr")) or _tail(res.get("module_stderr"))
    if not detail and not parts:
        detail = _tail(res.get("stdout")) or _tail(res.get("module_stdout"))
    if detail and detail not in " ".join(parts):
        parts.append(detail)
    rc = res.get("rc")
    if isinstance(rc, int) and rc != 0 and "return code" not in " ".join(parts):
        parts.append(f"(rc {rc})")
    return _shorten(redact(": ".join(parts) if parts else "no reason given by the module"))


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


def _never() -> bool:
    return False


def _side_group(config: LoadedConfig, service: str, side: Side) -> str:
    svc = config.service(service)
    if side not in SIDES:
        raise BadInput(f"unknown side {side!r}", hint=f"use one of: {', '.join(SIDES)}")
    group: str = getattr(svc.sides, side)
    return group


def _side_hosts(config: LoadedConfig, service: str, side: Side) -> list[str]:
    from orchestrator.inventory import load_fleet

    return [h.name for h in load_fleet(config).service(service).side(side)]


def _ssh_args(config: LoadedConfig, control_dir: Path) -> str:
    """ssh options that come first on the command line (ssh keeps an option's first value)."""
    known_hosts = config.known_hosts_path
    args = [
        "-o",
        f"UserKnownHostsFile={known_hosts}",
        "-o",
        "StrictHostKeyChecking=yes",
        "-o",
        "GlobalKnownHostsFile=/dev/null",
        "-o",
        "CheckHostIP=no",
        "-o",
        "BatchMode=yes",
        "-o",
        "ControlMaster=auto",
        "-o",
        f"ControlPersist={_SSH_CONTROL_PERSIST}",
        "-o",
        f"ControlPath={control_dir}/%C",
    ]
    key = config.private_key_path
    if key is not None:
        args += ["-o", f"IdentityFile={key}", "-o", "IdentitiesOnly=yes"]
    ssh_config = config.ssh_config_path
    if ssh_config is not None:
        args = ["-F", str(ssh_config), *args]
    return " ".join(_quote(a) for a in args)


def _close_masters(control_dir: Path) -> None:
    """Stop the run's SSH master connections now instead of after ControlPersist."""
    import subprocess

    try:
        sockets = [p for p in control_dir.iterdir() if p.is_socket()]
    except OSError:
        return
    for sock in sockets:
        try:
            subprocess.run(
                ["ssh", "-o", f"ControlPath={sock}", "-O", "exit", "bluegreen-master"],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                timeout=5,
                check=False,
            )
        except (OSError, subprocess.SubprocessError):
            pass


def _quote(arg: str) -> str:
    # Ansible splits ssh_args with shlex
    import shlex

    return shlex.quote(arg)


def _envvars(config: LoadedConfig, control_dir: Path) -> dict[str, str]:
    bin_dir = str(Path(sys.prefix) / "bin")
    path = os.pathsep.join([bin_dir, os.environ.get("PATH", "/usr/local/bin:/usr/bin:/bin")])
    env = {
        "PATH": path,
        "ANSIBLE_HOST_KEY_CHECKING": "True",
        "ANSIBLE_SSH_ARGS": _ssh_args(config, control_dir),
        "ANSIBLE_SSH_CONTROL_PATH_DIR": str(control_dir),
        "ANSIBLE_REMOTE_USER": config.model.ssh.user,
        "ANSIBLE_TIMEOUT": str(int(max(1, round(config.model.ssh.connect_timeout)))),
        "ANSIBLE_NOCOLOR": "1",
        "ANSIBLE_FORCE_COLOR": "0",
        "ANSIBLE_RETRY_FILES_ENABLED": "False",
        "ANSIBLE_STDOUT_CALLBACK": "default",
        "ANSIBLE_DEPRECATION_WARNINGS": "False",
        "ANSIBLE_SYSTEM_WARNINGS": "False",
        # never ask for anything on a terminal
        "ANSIBLE_ASK_PASS": "False",
        "ANSIBLE_BECOME_ASK_PASS": "False",
        "ANSIBLE_LOCAL_TEMP": str(control_dir.parent / "tmp"),
    }
    key = config.private_key_path
    if key is not None:
        env["ANSIBLE_PRIVATE_KEY_FILE"] = str(key)
    return env


def _extravars(
    config: LoadedConfig, service: str, group: str, packages: list[PackageSpec] | None
) -> dict[str, Any]:
    settings = config.service(service).patch
    if packages is None:
        specs = list(settings.packages)
        security = settings.security_updates
    else:
        if not packages:
            raise BadInput(
                "nothing to patch: the package list is empty",
                hint="give at least one package (NAME or NAME=VERSION), or pass None to use"
                f" services.{service}.patch from {config.path.name}",
            )
        names = [p.name for p in packages]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise BadInput(
                f"package listed more than once: {', '.join(dupes)}",
                hint="list each package once",
            )
        specs = list(packages)
        security = False
    return {
        "target": group,
        "packages": [str(p) for p in specs],
        "security_updates": security,
        "patch_serial": settings.serial,
        "patch_max_fail_percentage": settings.max_fail_percentage,
    }


class _Collector:
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

        if kind == "runner_on_ok":
            changed = bool(res.get("changed"))
            if changed and task not in _NOT_A_CHANGE:
                host.changed = True
            if self.check_mode:
                host.would_change.update(_planned_changes(res))
            if task == REPORT_TASK:
                self._read_report(host, res.get(REPORT_VAR))
            status = "changed" if changed else "ok"
            self._emit(PatchProgress(str(host_name), task, status, None))
        elif kind == "runner_on_failed":
            if data.get("ignore_errors"):
                self._emit(PatchProgress(str(host_name), task, "ok", "failed (ignored)"))
                return
            reason = _failure_text(res)
            if host.failed_task is None:
                host.failed_task = task
                host.message = f"{host_name}: task {task!r} failed: {reason}"
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
    def _read_report(host: HostPatchResult, report: Any) -> None:
        if not isinstance(report, Mapping):
            return
        versions = report.get("versions")
        if isinstance(versions, Mapping):
            host.versions = {str(k): str(v) for k, v in versions.items()}
        restarted = report.get("restarted")
        if isinstance(restarted, list):
            host.restarted = [str(u) for u in restarted]


def patch_hosts(
    config: LoadedConfig,
    service: str,
    side: Side,
    packages: list[PackageSpec] | None,
    *,
    check_mode: bool = False,
    on_event: Callable[[PatchProgress], None] | None = None,
    cancel: Callable[[], bool] | None = None,
) -> PatchResult:
    """Patch (or, with `check_mode`, plan) the `side` of `service` with its patch playbook.

    `packages=None` uses `services.<service>.patch` from the config (packages or security
    updates). Returns a `PatchResult` for every host of the side; it does not raise for a
    failed host. Raises `BadInput` for a bad service/side/package list and `PatchFailed` when
    ansible-runner cannot run at all.
    """
    group = _side_group(config, service, side)
    playbook = config.playbook_path(service)
    inventory = config.inventory_path
    extravars = _extravars(config, service, group, packages)
    expected = _side_hosts(config, service, side)
    timeout = config.service(service).patch.timeout_seconds
    cancel_cb = cancel if cancel is not None else _never

    import ansible_runner  # lazy: heavy, and not needed by the fast paths

    collector = _Collector(on_event, check_mode)
    started = time.monotonic()
    workdir = Path(tempfile.mkdtemp(prefix="bluegreen-patch-"))
    control_dir = workdir / "cp"
    try:
        os.chmod(workdir, 0o700)
        control_dir.mkdir(mode=0o700)
        (workdir / "tmp").mkdir(mode=0o700)
        cmdline = "--check --diff" if check_mode else None
        try:
            runner = ansible_runner.run(
                private_data_dir=str(workdir),
                playbook=str(playbook),
                inventory=str(inventory),
                limit=group,
                extravars=extravars,
                envvars=_envvars(config, control_dir),
                cmdline=cmdline,
                suppress_env_files=True,
                quiet=True,
                timeout=timeout,
                event_handler=collector,
                cancel_callback=cancel_cb,
                # never pass a status_handler that logs: the `starting` payload holds the env
            )
        except Exception as exc:  # ansible-runner raises plain exceptions when it cannot start
            raise PatchFailed(
                f"cannot run ansible-runner for {service}/{side}: {_shorten(redact(str(exc)))}",
                hint="check that ansible-core and ansible-runner are installed in the same"
                " environment as bluegreen",
            ) from None
        rc = int(runner.rc) if runner.rc is not None else -1
        status = str(runner.status)
    finally:
        _close_masters(control_dir)
        shutil.rmtree(workdir, ignore_errors=True)
    seconds = time.monotonic() - started
    return _finish(collector, expected, service, side, check_mode, rc, status, seconds, timeout)


def _finish(
    collector: _Collector,
    expected: list[str],
    service: str,
    side: str,
    check_mode: bool,
    rc: int,
    status: str,
    seconds: float,
    timeout: int,
) -> PatchResult:
    if rc == 254 and status not in ("timeout", "canceled"):
        status = "canceled"
    hosts: dict[str, HostPatchResult] = {}
    failures = collector.stats.get("failures", {})
    dark = collector.stats.get("dark", {})
    for name in expected:
        h = collector.hosts.get(name) or HostPatchResult()
        hosts[name] = h
        if h.failed_task is None and (failures.get(name) or dark.get(name)):
            h.message = f"{name}: failed (see the run's events)"
            h.unreachable = bool(dark.get(name))
        if not h.reached and h.message is None:
            if status == "timeout":
                h.message = f"{name}: not patched: the run timed out after {timeout}s"
            elif status == "canceled":
                h.message = f"{name}: not patched: the run was canceled"
            else:
                h.message = (
                    f"{name}: not patched: the play stopped before reaching it"
                    " (an earlier batch failed, or the host is not in the inventory group)"
                )
        h.ok = (
            h.reached
            and h.failed_task is None
            and not h.unreachable
            and h.message is None
            and status == "successful"
        )
        if not h.ok and h.message is None:
            h.message = f"{name}: not confirmed: run {status} (rc {rc})"
    # hosts the play touched that are not in the side (should not happen; report them)
    for name, h in collector.hosts.items():
        if name not in hosts:
            hosts[name] = h
            h.ok = h.failed_task is None and not h.unreachable and status == "successful"
    ok = status == "successful" and rc == 0 and all(h.ok for h in hosts.values()) and bool(hosts)
    message: str | None = None
    if status == "timeout":
        message = f"patching {service}/{side} timed out after {timeout}s"
    elif status == "canceled":
        message = f"patching {service}/{side} was canceled"
    elif not ok:
        bad = [h.message for _, h in sorted(hosts.items()) if not h.ok and h.message]
        message = "; ".join(bad) if bad else f"ansible-playbook failed (rc {rc})"
    return PatchResult(
        ok=ok,
        rc=rc,
        status=status,
        hosts=hosts,
        seconds=round(seconds, 2),
        service=service,
        side=side,
        check_mode=check_mode,
        message=message,
    )
