"""How the HAProxy driver reaches the runtime API and the files next to it.

Three transports, one small surface (`Transport`):

- `UnixSocketTransport`: a local unix stats socket (`unix:///run/haproxy/admin.sock`);
- `TcpSocketTransport`: a stats socket bound to TCP (`tcp://127.0.0.1:9999`);
- `SSHTransport`: a remote load balancer; each command runs `socat stdio UNIX-CONNECT:<path>`
  there over paramiko (strict host keys, `RejectPolicy`).

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
import shlex
import socket
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Protocol, TypeVar

from orchestrator.errors import RouterError

if TYPE_CHECKING:
    import paramiko
    from tenacity import wait_exponential_jitter

    from orchestrator.routers.haproxy.settings import HAProxySettings, SSHTarget

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


class SSHTransport:
    """The runtime API of a remote HAProxy, via `socat` on that host over SSH.

    The SSH connection is opened on first use and kept until `close()`; each command is a
    new channel. Host keys are checked strictly against `target.known_hosts`.
    """

    def __init__(self, target: SSHTarget, socket_path: str, timeout: float) -> None:
        self.target = target
        self.socket_path = socket_path
        self.timeout = timeout
        self.description = f"ssh://{target.user}@{target.host}:{target.port}{socket_path}"
        self._client: paramiko.SSHClient | None = None

    # -- connection -----------------------------------------------------------------
    def _connect(self) -> paramiko.SSHClient:
        import paramiko

        client = paramiko.SSHClient()
        try:
            client.load_host_keys(self.target.known_hosts)
        except Exception as exc:  # OSError, or paramiko's InvalidHostKey for a bad line
            client.close()
            raise RouterError(
                f"{self.description}: cannot read known_hosts {self.target.known_hosts}: {exc}"
            ) from exc
        client.set_missing_host_key_policy(paramiko.RejectPolicy())
        try:
            client.connect(
                self.target.host,
                port=self.target.port,
                username=self.target.user,
                key_filename=self.target.key_file,
                timeout=self.target.connect_timeout,
                banner_timeout=self.target.connect_timeout,
                auth_timeout=self.target.connect_timeout,
                allow_agent=self.target.key_file is None,
                look_for_keys=self.target.key_file is None,
            )
        except paramiko.BadHostKeyException as exc:
            client.close()
            raise RouterError(
                f"{self.description}: host key mismatch: {exc}",
                hint=f"verify the load balancer's key and update {self.target.known_hosts}",
            ) from exc
        except paramiko.AuthenticationException as exc:
            client.close()
            raise RouterError(
                f"{self.description}: SSH authentication failed: {exc}",
                hint="check `ssh.user` and `ssh.key_file` in bluegreen.yml",
            ) from exc
        except paramiko.SSHException as exc:
            # Includes "not found in known_hosts" from RejectPolicy: never retried.
            client.close()
            raise RouterError(
                f"{self.description}: SSH refused: {exc}",
                hint=f"add the load balancer's host key to {self.target.known_hosts}",
            ) from exc
        except BaseException:
            client.close()
            raise
        return client

    def _ensure_client(self) -> paramiko.SSHClient:
        client = self._client
        transport = client.get_transport() if client is not None else None
        if client is None or transport is None or not transport.is_active():
            if client is not None:
                client.close()
            self._client = None
            client = with_retries(self.description, self._connect)
            self._client = client
        return client

    def _exec(self, remote_command: str, stdin_data: bytes) -> tuple[int, bytes, bytes]:
        client = self._ensure_client()
        import paramiko

        try:
            stdin, stdout, stderr = client.exec_command(remote_command, timeout=self.timeout)
            stdin.write(stdin_data)
            stdin.flush()
            stdin.channel.shutdown_write()
            out = stdout.read()  # all of stdout before the exit status, or it can hang
            err = stderr.read()
            status = stdout.channel.recv_exit_status()
        except (OSError, paramiko.SSHException) as exc:
            raise RouterError(f"{self.description}: remote command failed: {exc}") from exc
        return status, out, err

    # -- Transport ------------------------------------------------------------------
    def command(self, line: str) -> str:
        _check_command_line(line)
        remote = f"socat stdio UNIX-CONNECT:{shlex.quote(self.socket_path)}"

        def once() -> str:
            status, out, err = self._exec(remote, line.encode("utf-8") + b"\n")
            if status != 0:
                message = err.decode("utf-8", errors="replace").strip()
                # socat's own words for "not there" / "nobody listening": retried like the
                # local transports.
                if "No such file" in message:
                    raise FileNotFoundError(message)
                if "Connection refused" in message:
                    raise ConnectionRefusedError(message)
                if "Permission denied" in message:
                    raise RouterError(f"{self.description}: permission denied: {message}")
                raise RouterError(f"{self.description}: socat exited {status}: {message}")
            return out.decode("utf-8", errors="replace")

        return with_retries(self.description, once)

    def read_text(self, path: str) -> str | None:
        quoted = shlex.quote(path)
        status, out, err = self._exec(
            f"if [ -e {quoted} ]; then cat -- {quoted}; else exit 3; fi", b""
        )
        if status == 3:
            return None
        if status != 0:
            raise RouterError(
                f"{self.description}: cannot read {path}: {err.decode(errors='replace').strip()}"
            )
        return out.decode("utf-8", errors="replace")

    def write_atomic(self, path: str, text: str, mode: int = 0o644) -> None:
        quoted = shlex.quote(path)
        script = (
            "set -e; "
            f'tmp=$(mktemp "$(dirname -- {quoted})/.bluegreen.XXXXXX"); '
            "trap 'rm -f \"$tmp\"' EXIT; "
            'cat > "$tmp"; '
            f'chmod {mode:o} "$tmp"; '
            'sync -- "$tmp" 2>/dev/null || sync; '
            f'mv -f -- "$tmp" {quoted}; '
            "trap - EXIT"
        )
        status, _out, err = self._exec(f"sh -c {shlex.quote(script)}", text.encode("utf-8"))
        if status != 0:
            raise RouterError(
                f"{self.description}: cannot write {path}: {err.decode(errors='replace').strip()}"
            )

    def persist_map(self, map_file: str, server_state_file: str, expect: str) -> None:
        """One remote command: `flock` on MAP_FILE.lock around `show map` and `show servers
        state` (through socat) written to temporary files, checked, synced, renamed."""
        script = (
            'set -e; t=$(mktemp "$(dirname -- "$1")/.bluegreen.XXXXXX"); '
            's=$(mktemp "$(dirname -- "$2")/.bluegreen.XXXXXX"); '
            'trap \'rm -f "$t" "$t.raw" "$s"\' EXIT; '
            'echo "show map $1" | socat stdio "UNIX-CONNECT:$3" > "$t.raw"; '
            # the reply must be only "<ref> <key> <value>" lines (no error text)
            'awk \'NF == 0 {next} NF != 3 {bad = 1; exit} {print $2, $3}'
            ' END {exit bad}\' "$t.raw" > "$t" || { rm -f "$t.raw"; echo "unexpected show map'
            ' reply" >&2; exit 4; }; rm -f "$t.raw"; '
            'grep -qxF -- "$4" "$t" || { echo "show map does not hold $4" >&2; exit 4; }; '
            'echo "show servers state" | socat stdio "UNIX-CONNECT:$3" > "$s"; '
            'test -s "$s" || { echo "empty show servers state" >&2; exit 4; }; '
            'chmod 644 "$t" "$s"; sync -- "$t" "$s" 2>/dev/null || sync; '
            'mv -f -- "$t" "$1"; mv -f -- "$s" "$2"; trap - EXIT'
        )
        remote = " ".join(
            shlex.quote(part)
            for part in (
                "flock", "-w", f"{MAP_LOCK_TIMEOUT_S:g}", f"{map_file}.lock", "sh", "-c", script,
                "sh", map_file, server_state_file, self.socket_path, expect,
            )
        )
        status, _out, err = self._exec(remote, b"")
        if status != 0:
            raise RouterError(
                f"{self.description}: cannot persist {map_file}: "
                f"{err.decode(errors='replace').strip() or f'exit {status}'}"
            )

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None


def make_transport(settings: HAProxySettings) -> Transport:
    """The transport named by `settings.socket` (and `settings.ssh`)."""
    address = settings.socket
    if address.startswith("unix://"):
        path = address.removeprefix("unix://")
        if not path:
            raise RouterError(f"router socket {address!r} has no path")
        if settings.ssh is not None:
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
