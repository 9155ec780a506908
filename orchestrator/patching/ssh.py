"""The SSH connections of one patch run: OpenSSH master connections owned by bluegreen.

While ansible-playbook starts, bluegreen opens one master connection per host, all hosts
at once, with strict host keys (the configured known_hosts, `StrictHostKeyChecking yes`,
`BatchMode yes`), under the ControlPath pattern that Ansible's ssh is given too
(`RUN_DIR/%C`). ansible-playbook then finds a master for each host and runs its commands
as sessions over it instead of connecting again; bluegreen reads dpkg over the same masters
before and after the playbook. All of them (and any master Ansible opened itself) are
closed when the run ends, in parallel.

`%C` is a hash of the local host, the destination, the port and the user: a master is
reused only when ssh is called with the same destination, port and user as Ansible
calls it (`ansible_host`, `ansible_port` only when set, `ansible_user`); otherwise Ansible
opens its own connection, which costs time but changes nothing else.

Unix socket paths are limited to 108 bytes: the run directory is kept short (see
`control_dir`), and %C is 40 characters.

A run directory is named after the process that made it (`bluegreen-patch-PID-XXXXXXXX`):
one left by a process that was killed (kill -9 skips every cleanup) is removed, its masters
closed, by `remove_stale_run_dirs`, which every patch run and every `resume` calls first.
Every ssh gets the minimal environment (`processes.child_env`) and `--` before the host.
"""

from __future__ import annotations

import os
import shlex
import shutil
import stat
import subprocess
import tempfile
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

from orchestrator.config.loaded import LoadedConfig
from orchestrator.inventory import Host
from orchestrator.processes import OutputTooLarge, alive, as_root, child_env
from orchestrator.processes import run as run_process

T = TypeVar("T")

#: how long an idle master outlives its last session (also after a kill -9 of bluegreen)
CONTROL_PERSIST = "60s"
_SOCKET_PATH_LIMIT = 100  # 108 bytes minus slack; the kernel's sun_path limit
_EXIT_TIMEOUT = 5.0


_PREFIX = "bluegreen-patch-"


def _run_base() -> Path:
    base = Path(tempfile.gettempdir())
    if len(str(base)) + len(f"/{_PREFIX}4194304-XXXXXXXX/cp/") + 40 > _SOCKET_PATH_LIMIT:
        base = Path("/tmp")
    return base


def control_dir() -> Path:
    """A new private directory (0700) for a run's control sockets, short enough for them;
    stale ones of killed runs are removed first."""
    base = _run_base()
    remove_stale_run_dirs(base)
    return Path(tempfile.mkdtemp(prefix=f"{_PREFIX}{os.getpid()}-", dir=base))


def remove_stale_run_dirs(base: Path | None = None) -> list[Path]:
    """Remove the run directories (and close the masters) of bluegreen processes of this
    user that no longer run: what a kill -9 left behind (ansible-runner's artifacts among
    them). A directory of a live process, of another user, or a symlink is left alone."""
    base = _run_base() if base is None else base
    removed: list[Path] = []
    try:
        entries = list(base.iterdir())
    except OSError:
        return removed
    for entry in entries:
        owner = entry.name.removeprefix(_PREFIX).split("-", 1)[0]
        if not entry.name.startswith(_PREFIX) or not owner.isdigit():
            continue
        try:
            info = entry.lstat()
        except OSError:
            continue
        if not stat.S_ISDIR(info.st_mode) or info.st_uid != os.getuid() or alive(int(owner)):
            continue
        close_masters(entry / "cp")
        shutil.rmtree(entry, ignore_errors=True)
        removed.append(entry)
    return removed


def strict_options(config: LoadedConfig, sockets: Path) -> list[str]:
    """ssh options for Ansible and for our own masters. They come first on every ssh
    command line, and ssh keeps an option's first value: the inventory cannot weaken them."""
    args = [
        "-o", f"UserKnownHostsFile={config.known_hosts_path}",
        "-o", "StrictHostKeyChecking=yes",
        "-o", "GlobalKnownHostsFile=/dev/null",
        "-o", "CheckHostIP=no",
        "-o", "BatchMode=yes",
        "-o", "ControlMaster=auto",
        "-o", f"ControlPersist={CONTROL_PERSIST}",
        "-o", f"ControlPath={sockets}/%C",
        # a host that dies mid-run is noticed within 15 s (its master closes, and every
        # session over it ends), not at the TCP timeout
        "-o", "ServerAliveInterval=5",
        "-o", "ServerAliveCountMax=3",
    ]  # fmt: skip
    key = config.private_key_path
    if key is not None:
        args += ["-o", f"IdentityFile={key}", "-o", "IdentitiesOnly=yes"]
    ssh_config = config.ssh_config_path
    if ssh_config is not None:
        args = ["-F", str(ssh_config), *args]
    return args


def ansible_ssh_args(config: LoadedConfig, sockets: Path) -> str:
    """`strict_options` as ANSIBLE_SSH_ARGS (Ansible splits it with shlex)."""
    return " ".join(shlex.quote(a) for a in strict_options(config, sockets))


@dataclass(frozen=True)
class Output:
    """A command's result on one host; `error` set when it could not run at all."""

    rc: int
    stdout: str
    stderr: str
    error: str | None = None


def _each(hosts: Sequence[Host], work: Callable[[Host], T]) -> dict[str, T]:
    if not hosts:
        return {}
    with ThreadPoolExecutor(max_workers=min(64, len(hosts))) as pool:
        return dict(zip((h.name for h in hosts), pool.map(work, hosts), strict=True))


class Masters:
    """One strict OpenSSH master connection per host of a run (see the module docstring)."""

    def __init__(
        self, config: LoadedConfig, hosts: Sequence[Host], sockets: Path, *, timeout: float
    ) -> None:
        self.hosts = list(hosts)
        self.sockets = sockets
        self.options = strict_options(config, sockets)
        self.connect_timeout = max(1, round(timeout))
        self.max_output = config.model.ssh.max_output_mb * 2**20
        self.become = config.model.ssh.become  # read as root, as Ansible patches (sudo -n)

    def _ssh(self, host: Host, *extra: str) -> list[str]:
        cmd = ["ssh", *self.options, "-o", f"ConnectTimeout={self.connect_timeout}"]
        cmd += ["-o", f"User={host.user}"]
        if host.port != 22:  # as Ansible: Port only when the inventory sets one
            cmd += ["-o", f"Port={host.port}"]
        if host.key_file:  # ansible_ssh_private_key_file: offered as Ansible offers it
            cmd += ["-o", f"IdentityFile={host.key_file}"]
        return [*cmd, *extra]

    def open_and_run(self, command: str, timeout: float) -> dict[str, Output]:
        """Connect every host (in parallel) as a master that stays after `command` ran.
        A host that failed here is left to Ansible, which fails it with its own message."""
        return self._each_command(command, timeout, "yes")

    def run(self, command: str, timeout: float) -> dict[str, Output]:
        """`command` on every host, over its master (or a new strict connection)."""
        return self._each_command(command, timeout, "no")

    def _each_command(self, command: str, timeout: float, master: str) -> dict[str, Output]:
        remote = as_root(command) if self.become else command

        def one(host: Host) -> Output:
            cmd = self._ssh(host, "-o", f"ControlMaster={master}", "--", host.address, remote)
            try:
                proc = run_process(cmd, timeout=timeout, max_output=self.max_output,
                                   env=child_env())
            except subprocess.TimeoutExpired:
                return Output(-1, "", "", f"no answer within {timeout:g} s")
            except OutputTooLarge as exc:  # a host over the cap is not read, never a pass
                return Output(-1, "", "", str(exc))
            except (OSError, subprocess.SubprocessError) as exc:
                return Output(-1, "", "", f"ssh: {exc}")
            if proc.returncode == 255:
                why = proc.stderr.strip()[-300:] or "ssh failed"
                return Output(255, proc.stdout, proc.stderr, why)
            return Output(proc.returncode, proc.stdout, proc.stderr)

        return _each(self.hosts, one)

    def close(self) -> None:
        close_masters(self.sockets)


def close_masters(sockets: Path) -> None:
    """Stop every master in a run's socket directory (ours and Ansible's), in parallel."""
    try:
        found = [p for p in sockets.iterdir() if p.is_socket()]
    except OSError:
        return

    def stop(sock: Path) -> None:
        try:
            subprocess.run(
                ["ssh", "-o", f"ControlPath={sock}", "-O", "exit", "bluegreen-master"],
                env=child_env(),
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                timeout=_EXIT_TIMEOUT,
                check=False,
            )
        except (OSError, subprocess.SubprocessError):
            pass

    if found:
        with ThreadPoolExecutor(max_workers=min(64, len(found))) as pool:
            list(pool.map(stop, found))
