"""A pytest-testinfra backend that runs commands over our strict SSH connection.

testinfra's own paramiko backend accepts any host key and has no command timeout; this one
reuses `SSHConnection` (RejectPolicy + our known_hosts) and gives every command a channel
timeout derived from the run's deadline.
"""

from __future__ import annotations

import contextlib
import shlex
import threading
import time
from collections.abc import Callable
from contextlib import AbstractContextManager
from typing import Any

import testinfra.host
from testinfra.backend.base import BaseBackend, CommandResult

from orchestrator.probes.connection import CommandTimeout, SSHConnection

DEFAULT_COMMAND_TIMEOUT = 60.0

# Static facts testinfra asks for before almost every module (system_info, which init,
# which tools exist). `prefetch` reads them all in one round trip; the answers are then
# served from memory for the life of the connection.
FACT_COMMANDS = (
    "uname -s",
    "uname -m",
    "uname -r",
    "cat /etc/os-release",
    "command -v command",
    "test -d /run/systemd/system/",
)
FACT_TOOLS = (
    "systemctl",
    "dpkg-query",
    "rpm",
    "apk",
    "ss",
    "netstat",
    "sshd",
    "sysctl",
    "getent",
    "initctl",
    "rc-service",
    "service",
    "stat",
    "ps",
    "pgrep",
    "hostname",
)
_FACT_MARK = "@@bluegreen-fact@@"


def _fact_commands() -> list[str]:
    return [*FACT_COMMANDS, *(f"command -v {t}" for t in FACT_TOOLS)]


def _memoizable(command: str) -> bool:
    return command in FACT_COMMANDS or (
        command.startswith("command -v ") and " " not in command[len("command -v ") :]
    )


class DeadlineExceeded(CommandTimeout):
    """The run's overall deadline passed (before or while the command ran)."""

    def __init__(self, command: str, deadline_s: float | None) -> None:
        super().__init__(command, 0.0)
        after = f" after {deadline_s:g} s" if deadline_s is not None else ""
        self.message = f"deadline exceeded{after} (command: {command[:120]})"
        self.args = (self.message,)


class StrictSSHBackend(BaseBackend):  # type: ignore[misc]
    NAME = "bluegreen"

    def __init__(
        self,
        connection: SSHConnection,
        *,
        deadline: float | None = None,
        deadline_s: float | None = None,
        command_timeout: float = DEFAULT_COMMAND_TIMEOUT,
        waiting: Callable[[], AbstractContextManager[None]] | None = None,
    ) -> None:
        super().__init__(connection.target.name)
        # entered around every wait for the host (see pytest_plugin.Turns)
        self.waiting = waiting or contextlib.nullcontext
        self.deadline_s = deadline_s  # the run's whole budget, for messages
        self.connection = connection
        self.deadline = deadline  # time.monotonic() value, or None for no overall deadline
        self.command_timeout = command_timeout
        self._memo: dict[str, tuple[int, bytes, bytes]] = {}
        self._memo_lock = threading.Lock()

    def prefetch(self) -> None:
        """Read the static facts testinfra needs in one command (see FACT_COMMANDS)."""
        commands = _fact_commands()
        script = "; ".join(
            f'echo {_FACT_MARK}; {c} 2>/dev/null; echo "{_FACT_MARK}-rc $?"' for c in commands
        )
        with self.waiting():
            rc, out, _ = self.connection.run_bytes(
                self.encode(f"sh -c {shlex.quote(script)}"), max(0.1, self.timeout())
            )
        chunks = out.split(_FACT_MARK.encode() + b"\n")[1:]
        if rc != 0 or len(chunks) != len(commands):
            return  # no memo: every fact is then asked for the ordinary way
        memo: dict[str, tuple[int, bytes, bytes]] = {}
        for command, chunk in zip(commands, chunks, strict=True):
            body, sep, tail = chunk.rpartition(_FACT_MARK.encode() + b"-rc ")
            if not sep or not tail.strip().isdigit():
                return
            memo[command] = (int(tail.strip()), body, b"")
        with self._memo_lock:
            self._memo.update(memo)

    def timeout(self) -> float:
        """Per-command channel timeout: the default, capped by what is left of the deadline."""
        if self.deadline is None:
            return self.command_timeout
        return min(self.command_timeout, self.deadline - time.monotonic())

    def run(self, command: str, *args: str, **kwargs: Any) -> CommandResult:
        command = self.get_command(command, *args)
        return self.run_command(command, timeout=kwargs.get("timeout"))

    def run_command(self, command: str, timeout: float | None = None) -> CommandResult:
        """Run an already quoted shell command line on the host."""
        cmd = self.encode(command)
        budget = self.timeout()
        capped_by_deadline = self.deadline is not None and budget < self.command_timeout
        if timeout is not None and timeout < budget:
            budget, capped_by_deadline = timeout, False
        if budget <= 0:
            raise DeadlineExceeded(command, self.deadline_s)
        with self._memo_lock:
            memo = self._memo.get(command)
        if memo is not None:
            result: CommandResult = self.result(memo[0], cmd, memo[1], memo[2])
            return result
        try:
            with self.waiting():
                rc, out, err = self.connection.run_bytes(cmd, budget)
        except CommandTimeout as exc:
            if capped_by_deadline:
                raise DeadlineExceeded(command, self.deadline_s) from exc
            raise
        if _memoizable(command):
            with self._memo_lock:
                self._memo[command] = (rc, out, err)
        result = self.result(rc, cmd, out, err)
        return result


def make_host(
    connection: SSHConnection,
    *,
    deadline: float | None = None,
    deadline_s: float | None = None,
    command_timeout: float = DEFAULT_COMMAND_TIMEOUT,
    prefetch: bool = False,
    waiting: Callable[[], AbstractContextManager[None]] | None = None,
) -> testinfra.host.Host:
    """A testinfra Host over `connection` (host.package, host.service, host.file, ...).

    Not cached process-wide (unlike `testinfra.get_host`): it lives as long as the connection.
    Thread-safe for commands: checks may run concurrently, one SSH channel each.
    `prefetch` reads testinfra's static facts in one round trip first (see FACT_COMMANDS).
    """
    backend = StrictSSHBackend(
        connection,
        deadline=deadline,
        deadline_s=deadline_s,
        command_timeout=command_timeout,
        waiting=waiting,
    )
    host = testinfra.host.Host(backend)
    backend.set_host(host)
    if prefetch:
        backend.prefetch()
    return host
