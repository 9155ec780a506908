"""Patch one side of a service with Ansible (`playbooks/patch.yml`) through ansible-runner.

`patch_hosts()` runs the service's patch playbook against the side's inventory group and turns
the runner's events into `PatchProgress` callbacks and one `PatchResult` with a line per host:
ok/changed, the failed task and why, unreachable, installed versions, restarted services and
(in check mode) the packages that would change. `patching.step.patch_side` wraps it with
bluegreen's own SSH masters and the dpkg reading before and after.

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

Connection settings (their measured effect is in the README, "Patching speed"):
- SSH masters (ControlMaster/ControlPersist) in the run's directory: every task of a host
  is a session over one connection instead of a new SSH handshake;
- pipelining: modules are fed to the host's Python over that session instead of being
  copied to a temporary file first (needs `requiretty` off in sudoers when `become` uses sudo;
  Debian's default sudoers has it off);
- forks sized to the side (up to 64): every host of a batch runs at the same time, where
  Ansible's default (5 forks) would patch a 25-host side in five rounds.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from orchestrator.config.loaded import LoadedConfig
from orchestrator.config.models import PackageSpec
from orchestrator.errors import BadInput, PatchFailed
from orchestrator.inventory import Fleet
from orchestrator.patching.events import Collector, redact, shorten
from orchestrator.patching.lifetime import PIDFILE, Guarded, end_group, leashed
from orchestrator.patching.results import HostPatchResult, PatchProgress, PatchResult
from orchestrator.patching.ssh import ansible_ssh_args, close_masters, control_dir
from orchestrator.processes import child_env
from orchestrator.sides import SIDES, Side

__all__ = ["PlaybookRun", "patch_hosts", "prepare", "run_playbook"]

_MAX_FORKS = 64
#: taken from bluegreen's environment when set (names and paths, not secrets): what an
#: operator may need for a vaulted inventory or their ansible.cfg, and which lab a lab
#: playbook (playbooks/lab-rebuild.yml runs `bluegreen lab reimage`) works on
_ANSIBLE_KEEP = ("ANSIBLE_CONFIG", "ANSIBLE_VAULT_PASSWORD_FILE", "BLUEGREEN_LAB_INSTANCE",
                 "BLUEGREEN_LAB_DIR", "BLUEGREEN_LAB_CACHE")

def _never() -> bool:
    return False


def _side_group(config: LoadedConfig, service: str, side: Side) -> str:
    svc = config.service(service)
    if side not in SIDES:
        raise BadInput(f"unknown side {side!r}", hint=f"use one of: {', '.join(SIDES)}")
    group: str = getattr(svc.sides, side)
    return group


def _side_hosts(config: LoadedConfig, service: str, side: Side, fleet: Fleet | None) -> list[str]:
    from orchestrator.inventory import load_fleet

    return [h.name for h in (fleet or load_fleet(config)).service(service).side(side)]


def _envvars(config: LoadedConfig, workdir: Path, sockets: Path, forks: int) -> dict[str, str]:
    # the minimal environment (no PGPASSWORD, no tokens: ansible-runner writes it to disk)
    env = child_env(keep=_ANSIBLE_KEEP)
    env |= {
        "ANSIBLE_HOST_KEY_CHECKING": "True",
        "ANSIBLE_SSH_ARGS": ansible_ssh_args(config, sockets),
        "ANSIBLE_SSH_CONTROL_PATH_DIR": str(sockets),
        "ANSIBLE_PIPELINING": "True",
        "ANSIBLE_FORKS": str(forks),
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
        "ANSIBLE_LOCAL_TEMP": str(workdir / "tmp"),
    }
    key = config.private_key_path
    if key is not None:
        env["ANSIBLE_PRIVATE_KEY_FILE"] = str(key)
    if config.model.ssh.become:  # the same `sudo -n` the probes and the dpkg reads use
        env.update({"ANSIBLE_BECOME": "True", "ANSIBLE_BECOME_METHOD": "sudo",
                    "ANSIBLE_BECOME_USER": "root", "ANSIBLE_BECOME_FLAGS": "-H -S -n"})
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



@dataclass(frozen=True)
class PlaybookRun:
    """A validated patch run, ready to start (see `prepare`)."""

    config: LoadedConfig
    service: str
    side: Side
    group: str
    playbook: Path
    extravars: dict[str, Any]
    expected: list[str]
    timeout: int
    check_mode: bool

    @property
    def forks(self) -> int:
        return max(1, min(_MAX_FORKS, len(self.expected)))


def prepare(
    config: LoadedConfig,
    service: str,
    side: Side,
    packages: list[PackageSpec] | None,
    *,
    check_mode: bool = False,
    fleet: Fleet | None = None,
) -> PlaybookRun:
    """Check the inputs; raises `BadInput` before anything runs. `fleet`: the command's
    parse of the inventory (None: parse it)."""
    group = _side_group(config, service, side)
    return PlaybookRun(
        config=config,
        service=service,
        side=side,
        group=group,
        playbook=config.playbook_path(service),
        extravars=_extravars(config, service, group, packages),
        expected=_side_hosts(config, service, side, fleet),
        timeout=config.service(service).patch.timeout_seconds,
        check_mode=check_mode,
    )


def patch_hosts(
    config: LoadedConfig,
    service: str,
    side: Side,
    packages: list[PackageSpec] | None,
    *,
    check_mode: bool = False,
    on_event: Callable[[PatchProgress], None] | None = None,
    cancel: Callable[[], bool] | None = None,
    fleet: Fleet | None = None,
) -> PatchResult:
    """Patch (or, with `check_mode`, plan) the `side` of `service` with its patch playbook.

    `packages=None` uses `services.<service>.patch` from the config (packages or security
    updates). Returns a `PatchResult` for every host of the side; it does not raise for a
    failed host. Raises `BadInput` for a bad service/side/package list and `PatchFailed` when
    ansible-runner cannot run at all.
    """
    run = prepare(config, service, side, packages, check_mode=check_mode, fleet=fleet)
    return run_playbook(run, on_event=on_event, cancel=cancel)


def run_playbook(
    run: PlaybookRun,
    *,
    on_event: Callable[[PatchProgress], None] | None = None,
    cancel: Callable[[], bool] | None = None,
    run_dir: Path | None = None,
    ssh_executable: Path | None = None,
) -> PatchResult:
    """Run a prepared patch run through ansible-runner.

    `run_dir`: a directory from `ssh.control_dir()` whose `cp/` holds master connections
    opened by the caller (`patch_side`); the caller closes them and removes it. Without it,
    the run makes its own and cleans up. `ssh_executable`: the ssh Ansible calls (a wrapper).
    """
    collector = Collector(on_event, run.check_mode)
    started = time.monotonic()
    own_dir = run_dir is None
    workdir = control_dir() if run_dir is None else run_dir
    ansible_dir = Path(tempfile.mkdtemp(prefix="ansible-", dir=workdir))
    sockets = workdir / "cp"
    envvars = _envvars(run.config, ansible_dir, sockets, run.forks)
    if ssh_executable is not None:
        envvars["ANSIBLE_SSH_EXECUTABLE"] = str(ssh_executable)
    try:
        os.chmod(workdir, 0o700)
        sockets.mkdir(mode=0o700, exist_ok=True)
        (ansible_dir / "tmp").mkdir(mode=0o700)
        guard = Guarded(cancel if cancel is not None else _never, collector)
        try:
            runner = _start(
                private_data_dir=str(ansible_dir),
                playbook=str(run.playbook),
                inventory=str(run.config.inventory_path),
                limit=run.group,
                extravars=run.extravars,
                envvars=envvars,
                cmdline="--check --diff" if run.check_mode else None,
                suppress_env_files=True,
                quiet=True,
                timeout=run.timeout,
                event_handler=guard.event,
                cancel_callback=guard.cancel,
                # never pass a status_handler that logs: the `starting` payload holds the env
            )
        except Exception as exc:  # ansible-runner raises plain exceptions when it cannot start
            guard.raise_kept()  # a callback's own error (the run was cancelled and ended)
            raise PatchFailed(
                f"cannot run ansible-runner for {run.service}/{run.side}: "
                f"{shorten(redact(str(exc)))}",
                hint="check that ansible-core and ansible-runner are installed in the same"
                " environment as bluegreen",
            ) from None
        guard.raise_kept()  # e.g. the store lost its session: the playbook was cancelled
        rc = int(runner.rc) if runner.rc is not None else -1
        status = str(runner.status)
    finally:
        if own_dir:
            close_masters(sockets)
            shutil.rmtree(workdir, ignore_errors=True)
        else:
            shutil.rmtree(ansible_dir, ignore_errors=True)
    seconds = time.monotonic() - started
    return _finish(
        collector, run.expected, run.service, run.side, run.check_mode, rc, status, seconds,
        run.timeout,
    )


def _start(**kwargs: Any) -> Any:
    """ansible_runner.run, but the process gets only `envvars` and what the runner sets
    itself: the runner seeds its environment with a copy of os.environ and writes it to
    `artifacts/<ident>/command` before starting (PITFALLS: ansible-runner). ansible-playbook
    runs on a leash (it dies with this process) and has ended when this returns or raises."""
    from ansible_runner.interface import init_runner  # lazy: heavy

    inherited = dict(os.environ)
    runner = init_runner(**kwargs)
    runner.config.env = runner_env(runner.config.env, inherited, kwargs["envvars"])
    pidfile = Path(kwargs["private_data_dir"]) / PIDFILE
    runner.config.command = leashed(runner.config.command, pidfile)
    try:
        runner.run()
    finally:  # a callback or a signal that escaped the runner left the playbook running
        end_group(pidfile)
    return runner


def runner_env(
    prepared: dict[str, Any], inherited: dict[str, str], envvars: dict[str, str]
) -> dict[str, Any]:
    """The runner's prepared environment without what it copied from `inherited` (bluegreen's
    environment): `envvars` and what it set or changed itself (callback plugins, RUNNER_*),
    with the runner's values (it overrides a few of ours, e.g. the stdout callback)."""
    return {
        k: v
        for k, v in prepared.items()
        if k in envvars or k not in inherited or inherited[k] != v
    }


def _finish(
    collector: Collector,
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
