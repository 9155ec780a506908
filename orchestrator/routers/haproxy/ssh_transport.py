"""The HAProxy driver's transport to a remote load balancer: the runtime API through `socat`
on that host, and the map and server-state files there, over one SSH connection (paramiko,
strict host keys against `ssh.known_hosts`, `RejectPolicy`). `transport.py` holds the
`Transport` surface, the retries and the local transports; `make_transport` builds this one
for a `socket: unix://...` with `ssh:`.

paramiko is imported only when the connection is opened: the rollback path starts fast.
"""

from __future__ import annotations

import shlex
from typing import TYPE_CHECKING

from orchestrator.errors import RouterError
from orchestrator.routers.haproxy.transport import (
    MAP_LOCK_TIMEOUT_S,
    _check_command_line,
    with_retries,
)

if TYPE_CHECKING:
    import paramiko

    from orchestrator.routers.haproxy.settings import SSHTarget


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
