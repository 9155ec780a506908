"""One strict paramiko SSH connection per host.

Strict host keys (RejectPolicy + our known_hosts), key auth only, bounded timeouts
everywhere, a bounded retry for connection-level errors only.
"""

from __future__ import annotations

import logging
import threading
import time
from types import TracebackType

import paramiko
from tenacity import (
    Retrying,
    before_sleep_log,
    retry_if_exception,
    stop_after_attempt,
    wait_random,
)

from orchestrator.errors import BluegreenError
from orchestrator.probes.base import ProbeTarget
from orchestrator.processes import as_root, too_large

log = logging.getLogger(__name__)

_READ_CHUNK = 65536
_IDLE_MIN_S = 0.001
_IDLE_MAX_S = 0.02
"""How long the read loop sleeps while a command is quiet: from 1 ms, doubling to 20 ms."""
_NO_STDIN = b"exec </dev/null; "
MAX_CHANNELS = 4
"""Concurrent commands per connection: below sshd's default MaxSessions (10)."""


class ProbeConnectionError(BluegreenError):
    """The host could not be reached, refused our key, or showed an unknown host key."""

    def __init__(self, message: str, *, reason: str, hint: str | None = None) -> None:
        super().__init__(message, hint=hint)
        self.reason = reason  # "host-key" | "auth" | "unreachable" | "ssh" | "output"


class CommandTimeout(BluegreenError):
    """A remote command did not finish within its channel timeout."""

    def __init__(self, command: str, timeout: float) -> None:
        super().__init__(f"command timed out after {timeout:.1f} s: {command[:120]}")
        self.command = command
        self.timeout = timeout


class OutputTooLarge(ProbeConnectionError):
    """A command answered more than the target's `max_output`: the channel was closed at
    the cap, nothing it wrote is kept, and the read (or check) fails with this message."""

    def __init__(self, command: str, limit: int) -> None:
        super().__init__(f"{too_large(limit)}: {command[:120]}", reason="output")
        self.limit = limit


class _QuietRefusals(logging.Filter):
    """paramiko logs every refused channel at ERROR; we retry those (see _open_channel)."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "open FAILED" not in record.getMessage()


logging.getLogger("paramiko.transport").addFilter(_QuietRefusals())


def _is_connection_level(exc: BaseException) -> bool:
    """Retry only what a second attempt can fix: refused/reset/timeout/banner trouble."""
    if isinstance(exc, paramiko.AuthenticationException | paramiko.BadHostKeyException):
        return False
    if isinstance(exc, OSError | EOFError):  # includes NoValidConnectionsError, timeouts
        return True
    if isinstance(exc, paramiko.SSHException):
        return "banner" in str(exc).lower()
    return False


class SSHConnection:
    """A paramiko client for one target. Use as a context manager; closed on exit."""

    def __init__(
        self, target: ProbeTarget, *, attempts: int = 2, max_channels: int = MAX_CHANNELS
    ) -> None:
        self.target = target
        self.attempts = attempts
        self._client: paramiko.SSHClient | None = None
        # Commands may run from several threads at once, one channel each.
        self._channels = threading.BoundedSemaphore(max(1, max_channels))
        self._open_lock = threading.Lock()  # threads sharing us connect once

    # -- lifecycle ---------------------------------------------------------------------
    def __enter__(self) -> SSHConnection:
        self.open()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    @property
    def is_open(self) -> bool:
        if self._client is None:
            return False
        transport = self._client.get_transport()
        return transport is not None and transport.is_active()

    def open(self, timeout: float | None = None) -> None:
        """Connect, or raise ProbeConnectionError whose message is the evidence."""
        with self._open_lock:
            if not self.is_open:
                self._open(timeout)

    def _open(self, timeout: float | None) -> None:
        t = self.target
        timeout = (
            t.connect_timeout if timeout is None else max(0.5, min(timeout, t.connect_timeout))
        )
        try:
            for attempt in Retrying(
                stop=stop_after_attempt(self.attempts),
                wait=wait_random(0.1, 0.5),
                retry=retry_if_exception(_is_connection_level),
                before_sleep=before_sleep_log(log, logging.INFO),
                reraise=True,
            ):
                with attempt:
                    self._connect_once(timeout)
        except paramiko.BadHostKeyException as exc:
            raise ProbeConnectionError(
                f"host key mismatch for {t.known_hosts_name} in {t.known_hosts} — refusing"
                f" (got {exc.key.get_name()} {exc.key.get_fingerprint().hex()})",
                reason="host-key",
                hint="check the host really changed its key, then update known_hosts",
            ) from exc
        except paramiko.AuthenticationException as exc:
            raise ProbeConnectionError(
                f"authentication failed for {t.user}@{t.known_hosts_name}"
                f" with key {t.key_file}: {exc}",
                reason="auth",
            ) from exc
        except paramiko.SSHException as exc:
            if "known_hosts" in str(exc):
                raise ProbeConnectionError(
                    f"host key unknown for {t.known_hosts_name} in {t.known_hosts} — refusing",
                    reason="host-key",
                    hint="add the host's key to known_hosts (strict checking stays on)",
                ) from exc
            raise ProbeConnectionError(
                f"ssh error with {t.known_hosts_name}: {exc}", reason="ssh"
            ) from exc
        except (OSError, EOFError) as exc:
            raise ProbeConnectionError(
                f"unreachable: {t.address}:{t.port}: {exc or type(exc).__name__}",
                reason="unreachable",
            ) from exc

    def _connect_once(self, timeout: float) -> None:
        t = self.target
        self.close()
        client = paramiko.SSHClient()
        client.set_missing_host_key_policy(paramiko.RejectPolicy())
        try:
            client.load_host_keys(t.known_hosts)
        except OSError as exc:
            client.close()
            raise paramiko.SSHException(f"cannot read known_hosts {t.known_hosts}: {exc}") from exc
        try:
            client.connect(
                t.address,
                port=t.port,
                username=t.user,
                key_filename=t.key_file,
                look_for_keys=False,
                allow_agent=False,
                timeout=timeout,
                banner_timeout=timeout,
                auth_timeout=timeout,
                channel_timeout=timeout,
            )
        except BaseException:
            client.close()
            raise
        self._client = client

    def close(self) -> None:
        if self._client is not None:
            try:
                self._client.close()
            finally:
                self._client = None

    # -- commands ----------------------------------------------------------------------
    def run_bytes(self, command: str | bytes, timeout: float) -> tuple[int, bytes, bytes]:
        """Run a command; read stdout and stderr fully, then the exit status.

        Raises OutputTooLarge once the two together pass the target's `max_output` (read in
        chunks: never more than the cap is held), CommandTimeout when it does not finish within `timeout` seconds (the
        channel is closed, so nothing keeps running on our side).
        """
        client = self._client
        if client is None:
            raise ProbeConnectionError("not connected", reason="ssh")
        transport = client.get_transport()
        if transport is None or not transport.is_active():
            raise self._lost()
        if self.target.become:  # as Ansible's become: every command, as root, sudo -n
            command = as_root(command)
        text = command.decode(errors="replace") if isinstance(command, bytes) else command
        timeout = max(0.1, timeout)
        deadline = time.monotonic() + timeout
        with self._channels:
            try:
                return self._run_on_channel(transport, command, text, timeout, deadline)
            except (paramiko.SSHException, OSError, EOFError) as exc:
                # The connection broke (host gone, closed at the end of the run): evidence.
                if not transport.is_active():
                    raise self._lost() from exc
                if time.monotonic() >= deadline:
                    raise CommandTimeout(text, timeout) from exc
                raise ProbeConnectionError(
                    f"ssh error with {self.target.known_hosts_name}: {exc or type(exc).__name__}",
                    reason="ssh",
                ) from exc

    def _lost(self) -> ProbeConnectionError:
        return ProbeConnectionError(
            f"connection to {self.target.known_hosts_name} was lost", reason="unreachable"
        )

    def _open_channel(
        self, transport: paramiko.Transport, text: str, timeout: float, deadline: float
    ) -> paramiko.Channel:
        """A session channel; sshd refuses beyond MaxSessions (10 by default) and frees a
        slot only once our close reached it, so a refusal is retried briefly."""
        delay = 0.01
        while True:
            try:
                return transport.open_session(timeout=max(0.1, deadline - time.monotonic()))
            except paramiko.SSHException as exc:
                refused = isinstance(exc, paramiko.ChannelException) or "open channel" in str(exc)
                if not refused or not transport.is_active():
                    raise
                if time.monotonic() + delay >= deadline:
                    raise CommandTimeout(text, timeout) from exc
                time.sleep(delay)
                delay = min(delay * 2, 0.2)

    def _run_on_channel(
        self,
        transport: paramiko.Transport,
        command: str | bytes,
        text: str,
        timeout: float,
        deadline: float,
    ) -> tuple[int, bytes, bytes]:
        chan = self._open_channel(transport, text, timeout, deadline)
        try:
            chan.settimeout(timeout)
            # stdin is /dev/null on the host, so we never send EOF ourselves: paramiko's
            # shutdown_write() can put its EOF on the wire after the CLOSE its transport
            # thread sends back for a command that already ended, and sshd then drops the
            # whole connection ("ieof packet referred to nonexistent channel").
            chan.exec_command(
                _NO_STDIN + command if isinstance(command, bytes) else _NO_STDIN.decode() + command
            )
            out = bytearray()
            err = bytearray()
            limit = self.target.max_output
            idle = _IDLE_MIN_S
            while True:
                got = len(out) + len(err)
                while chan.recv_ready():
                    out += chan.recv(_READ_CHUNK)
                    if len(out) + len(err) > limit:
                        raise OutputTooLarge(text, limit)
                while chan.recv_stderr_ready():
                    err += chan.recv_stderr(_READ_CHUNK)
                    if len(out) + len(err) > limit:
                        raise OutputTooLarge(text, limit)
                if (
                    chan.exit_status_ready()
                    and chan.eof_received
                    and not chan.recv_ready()
                    and not chan.recv_stderr_ready()
                ):
                    break
                if chan.closed and not chan.recv_ready() and not chan.recv_stderr_ready():
                    break
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise CommandTimeout(text, timeout)
                # Polled, never select() on the channel: that gives it a pipe which close()
                # closes while paramiko's transport thread may still feed late data to it;
                # the write then fails (EBADF, or lands in whatever reused the descriptor)
                # and kills the whole connection (seen with a 512 MiB flood cut at the cap).
                idle = _IDLE_MIN_S if len(out) + len(err) > got else min(idle * 2, _IDLE_MAX_S)
                time.sleep(min(remaining, idle))
            # paramiko says -1 for a channel closed without an exit status (it closes the
            # channels of a dying connection before it marks the transport inactive): partial
            # output and no exit status are no result.
            rc = chan.recv_exit_status() if chan.exit_status_ready() else -1
            if rc < 0:
                if not transport.is_active():
                    raise self._lost()
                raise ProbeConnectionError(
                    f"no exit status from {self.target.known_hosts_name} for: {text[:120]}"
                    " (the command was killed, or the connection broke)",
                    reason="ssh",
                )
            return rc, bytes(out), bytes(err)
        except TimeoutError as exc:
            raise CommandTimeout(text, timeout) from exc
        finally:
            chan.close()

    def run(self, command: str, timeout: float) -> tuple[int, str, str]:
        rc, out, err = self.run_bytes(command, timeout)
        return rc, out.decode(errors="replace"), err.decode(errors="replace")
