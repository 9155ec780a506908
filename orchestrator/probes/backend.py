"""A pytest-testinfra backend that runs commands over our strict SSH connection.

testinfra's own paramiko backend accepts any host key and has no command timeout; this one
reuses `SSHConnection` (RejectPolicy + our known_hosts) and gives every command a channel
timeout derived from the run's deadline.
"""

from __future__ import annotations

import time
from typing import Any

import testinfra.host
from testinfra.backend.base import BaseBackend, CommandResult

from orchestrator.probes.connection import CommandTimeout, SSHConnection

DEFAULT_COMMAND_TIMEOUT = 60.0


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
    ) -> None:
        super().__init__(connection.target.name)
        self.deadline_s = deadline_s  # the run's whole budget, for messages
        self.connection = connection
        self.deadline = deadline  # time.monotonic() value, or None for no overall deadline
        self.command_timeout = command_timeout

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
        try:
            rc, out, err = self.connection.run_bytes(cmd, budget)
        except CommandTimeout as exc:
            if capped_by_deadline:
                raise DeadlineExceeded(command, self.deadline_s) from exc
            raise
        result: CommandResult = self.result(rc, cmd, out, err)
        return result


def make_host(
    connection: SSHConnection,
    *,
    deadline: float | None = None,
    deadline_s: float | None = None,
    command_timeout: float = DEFAULT_COMMAND_TIMEOUT,
) -> testinfra.host.Host:
    """A testinfra Host over `connection` (host.package, host.service, host.file, ...).

    Not cached process-wide (unlike `testinfra.get_host`): it lives as long as the connection.
    """
    backend = StrictSSHBackend(
        connection, deadline=deadline, deadline_s=deadline_s, command_timeout=command_timeout
    )
    host = testinfra.host.Host(backend)
    backend.set_host(host)
    return host
