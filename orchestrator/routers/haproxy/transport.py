"""How the HAProxy driver reaches the runtime API and the files next to it.

Three transports, one small surface (`Transport`):

- `UnixSocketTransport`: a local unix stats socket (`unix:///run/haproxy/admin.sock`);
- `TcpSocketTransport`: a stats socket bound to TCP (`tcp://127.0.0.1:9999`);
- `SSHTransport` (`ssh_transport.py`): a remote load balancer; each command runs
  `socat stdio UNIX-CONNECT:<path>` there over paramiko (strict host keys, `RejectPolicy`).

Every command uses its own connection: HAProxy closes a non-interactive session after one
reply. Only connection-level failures are retried (3 attempts, exponential backoff with
jitter, well under 5 s in total); authentication and host-key failures become a
`RouterError` at once. The two local transports also read and write the map and
server-state files on this machine; the SSH transport does it on the remote host.

paramiko is imported only when an SSH transport connects: the rollback path starts fast.
"""

from __future__ import annotations

import logging
import os
import socket
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Protocol, TypeVar

from orchestrator.errors import RouterError

if TYPE_CHECKING:
    from tenacity import wait_exponential_jitter

    from orchestrator.routers.haproxy.settings import HAProxySettings

log = logging.getLogger(__name__)

T = TypeVar("T")

ATTEMPTS = 3
_MAX_REPLY = 16 * 1024 * 1024  # a `show stat` of a very large config is a few MB


def _is_connection_error(exc: BaseException) -> bool:
    """Worth another attempt: the socket is not there (yet) or does not answer (yet)."""
    if isinstance(exc, ConnectionRefusedError | FileNotFoundError | TimeoutError):
        return True
    # paramiko's NoValidConnectionsError subclasses socket.error; checked by name so that
    # paramiko is not imported here.
    return type(exc).__name__ == "NoValidConnectionsError"


def _backoff() -> wait_exponential_jitter:
    """0.1 s, 0.2 s, ... capped at 1 s, plus up to 0.2 s of jitter: 3 attempts take < 2 s."""
    from tenacity import wait_exponential_jitter

    try:  # tenacity >= 9.1 names the first wait `multiplier` (`initial` is deprecated)
        return wait_exponential_jitter(multiplier=0.1, max=1.0, jitter=0.2)  # type: ignore[call-arg,unused-ignore]
    except TypeError:
        return wait_exponential_jitter(initial=0.1, max=1.0, jitter=0.2)


def with_retries(what: str, action: Callable[[], T]) -> T:
    """Run `action`, retrying connection-level errors only; RouterError when exhausted.

    The first attempt runs without tenacity (not even imported: the rollback fast path);
    after a connection-level failure tenacity replays that failure as its attempt 1, so
    the backoff and attempt count are exactly those of a plain `Retrying` loop.
    """
    try:
        return action()
    except Exception as exc:
        if not _is_connection_error(exc):
            raise
        first_failure: BaseException | None = exc
    from tenacity import (
        RetryError,
        Retrying,
        before_sleep_log,
        retry_if_exception,
        stop_after_attempt,
    )

    def attempt() -> T:
        nonlocal first_failure
        if first_failure is not None:
            failure, first_failure = first_failure, None
            raise failure
        return action()

    retrying = Retrying(
        stop=stop_after_attempt(ATTEMPTS),
        wait=_backoff(),
        retry=retry_if_exception(_is_connection_error),
        # INFO, not WARNING: Python's last-resort handler would print "Retrying ..." lines
        # before the one clear error the CLI shows when every attempt failed
        before_sleep=before_sleep_log(log, logging.INFO),
        reraise=False,
    )
    try:
        return retrying(attempt)
    except RetryError as exc:
        last = exc.last_attempt.exception()
        raise RouterError(
            f"{what}: cannot connect after {ATTEMPTS} attempts: {last!r}",
            hint="check that HAProxy runs and that the `socket:` path/address in bluegreen.yml is right",
        ) from last


class Transport(Protocol):
    """The runtime API plus the two files a flip must persist."""

    description: str

    def command(self, line: str) -> str:
        """Send one runtime API command; return the raw reply text."""
        ...

    def read_text(self, path: str) -> str | None:
        """The file's text, or None when it does not exist."""
        ...

    def write_atomic(self, path: str, text: str, mode: int = 0o644) -> None:
        """Replace the file atomically (temporary file in the same directory, fsync, rename)."""
        ...

    def persist_map(self, map_file: str, server_state_file: str, expect: str) -> None:
        """Write `map_file` from what HAProxy holds in memory (`show map`), and the server
        state, under an flock of `MAP_FILE.lock`, each to a temporary file, fsync, rename.
        `expect` ("service backend") must be in the map. RouterError if anything fails."""
        ...

    def close(self) -> None: ...


MAP_LOCK_TIMEOUT_S = 10.0


def map_file_text(reply: str, expect: str) -> str:
    """`show map FILE` lines ("<ref> <key> <value>") as map file lines ("<key> <value>").
    Anything else (an error reply) raises, so a map file is never written from it."""
    lines: list[str] = []
    for raw in reply.splitlines():
        parts = raw.split()
        if not parts:
            continue
        if len(parts) != 3:
            raise RouterError(f"haproxy: unexpected `show map` line {raw[:200]!r}; the map "
                              "file was not written")
        lines.append(f"{parts[1]} {parts[2]}")
    if expect not in lines:
        raise RouterError(f"haproxy: `show map` does not hold {expect!r} (it holds "
                          f"{len(lines)} entries); the map file was not written")
    return "\n".join(lines) + "\n"


@contextmanager
def _file_lock(path: str, timeout_s: float) -> Iterator[None]:
    """An exclusive flock on `path` (created 0644, no symlink), polled until `timeout_s`."""
    from orchestrator import flock

    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o644)
    except OSError as exc:
        raise RouterError(f"cannot open the map lock {path}: {exc}") from exc
    try:
        if not flock.acquire(fd, timeout_s):
            raise RouterError(
                f"the map lock {path} is held by another process for more than {timeout_s:g} s"
            )
        try:
            yield
        finally:
            flock.release(fd)
    finally:
        os.close(fd)


def _check_command_line(line: str) -> None:
    if "\n" in line or "\r" in line or ";" in line:
        # A newline or ';' would smuggle a second command into the session.
        raise RouterError(f"refusing runtime API command with a separator: {line!r}")


class _LocalFiles:
    """File access on this machine (the load balancer runs here)."""

    def read_text(self, path: str) -> str | None:
        try:
            return Path(path).read_text(encoding="utf-8")
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise RouterError(f"cannot read {path}: {exc}") from exc

    def write_atomic(self, path: str, text: str, mode: int = 0o644) -> None:
        target = Path(path)
        try:
            fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
        except OSError as exc:
            raise RouterError(f"cannot write {path}: {exc}") from exc
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as handle:
                handle.write(text)
                handle.flush()
                os.fchmod(handle.fileno(), mode)
                os.fsync(handle.fileno())
            os.replace(tmp, target)
            dir_fd = os.open(target.parent, os.O_RDONLY)
            try:
                os.fsync(dir_fd)
            finally:
                os.close(dir_fd)
        except OSError as exc:
            Path(tmp).unlink(missing_ok=True)
            raise RouterError(f"cannot write {path}: {exc}") from exc


class _SocketTransport(_LocalFiles):
    description = "socket"

    def __init__(self, timeout: float) -> None:
        self.timeout = timeout

    def _connect(self) -> socket.socket:
        raise NotImplementedError

    def command(self, line: str) -> str:
        _check_command_line(line)
        # Only the connect is retried: a command that reached HAProxy is never sent twice.
        sock = with_retries(f"{self.description}", self._connect)
        try:
            with sock:
                sock.sendall(line.encode("utf-8") + b"\n")
                chunks: list[bytes] = []
                size = 0
                while True:
                    chunk = sock.recv(65536)
                    if not chunk:
                        break
                    chunks.append(chunk)
                    size += len(chunk)
                    if size > _MAX_REPLY:
                        raise RouterError(f"{self.description}: reply to {line!r} too large")
        except OSError as exc:
            raise RouterError(f"{self.description}: {line!r} failed: {exc}") from exc
        return b"".join(chunks).decode("utf-8", errors="replace")

    def persist_map(self, map_file: str, server_state_file: str, expect: str) -> None:
        with _file_lock(f"{map_file}.lock", MAP_LOCK_TIMEOUT_S):
            self.write_atomic(map_file, map_file_text(self.command(f"show map {map_file}"),
                                                      expect), 0o644)
            state = self.command("show servers state")
            if not state.strip():
                raise RouterError("haproxy: empty `show servers state` reply")
            self.write_atomic(server_state_file, state, 0o644)

    def close(self) -> None:
        """Nothing is kept open between commands."""


class UnixSocketTransport(_SocketTransport):
    def __init__(self, path: str, timeout: float) -> None:
        super().__init__(timeout)
        self.path = path
        self.description = f"unix://{path}"

    def _connect(self) -> socket.socket:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self.timeout)
        try:
            sock.connect(self.path)
        except PermissionError as exc:
            sock.close()
            raise RouterError(
                f"{self.description}: permission denied opening the socket",
                hint="run bluegreen as a user that may open the HAProxy admin socket",
            ) from exc
        except BaseException:
            sock.close()
            raise
        return sock


class TcpSocketTransport(_SocketTransport):
    """A TCP stats socket. The map and server-state files are taken to be on this machine."""

    def __init__(self, host: str, port: int, timeout: float) -> None:
        super().__init__(timeout)
        self.host = host
        self.port = port
        self.description = f"tcp://{host}:{port}"

    def _connect(self) -> socket.socket:
        return socket.create_connection((self.host, self.port), timeout=self.timeout)


def make_transport(settings: HAProxySettings) -> Transport:
    """The transport named by `settings.socket` (and `settings.ssh`)."""
    address = settings.socket
    if address.startswith("unix://"):
        path = address.removeprefix("unix://")
        if not path:
            raise RouterError(f"router socket {address!r} has no path")
        if settings.ssh is not None:
            from orchestrator.routers.haproxy.ssh_transport import SSHTransport

            return SSHTransport(settings.ssh, path, settings.timeout)
        return UnixSocketTransport(path, settings.timeout)
    if address.startswith("tcp://"):
        if settings.ssh is not None:
            raise RouterError(
                "router: `ssh:` works with a unix socket on the remote host only",
                hint="use socket: unix:///run/haproxy/admin.sock with ssh:",
            )
        host, sep, port = address.removeprefix("tcp://").rpartition(":")
        if not sep or not host or not port.isdigit():
            raise RouterError(f"router socket {address!r} is not tcp://HOST:PORT")
        return TcpSocketTransport(host.strip("[]"), int(port), settings.timeout)
    raise RouterError(f"router socket {address!r}: unknown scheme (unix:// or tcp://)")
