"""A throwaway OpenSSH server on 127.0.0.1 for integration tests (real sshd, no mocks).

Needs /usr/sbin/sshd (Debian: `apt-get install -y openssh-server`) and ssh-keygen, and runs
as root (tests log in as root with a generated key). Only the PID this module started is
ever killed.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

SSHD = "/usr/sbin/sshd"


@dataclasses.dataclass(frozen=True)
class SshdServer:
    address: str
    port: int
    host_key: Path  # private host key (public at .pub)
    client_key: Path  # private client key, authorized for every user
    known_hosts: Path
    config: Path
    pid: int
    log: Path


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _keygen(path: Path) -> None:
    subprocess.run(
        ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "bgtest", "-f", str(path)],
        check=True,
        stdin=subprocess.DEVNULL,
        timeout=30,
    )


def _wait_ready(port: int, proc: subprocess.Popen[bytes], log: Path, deadline_s: float) -> None:
    deadline = time.monotonic() + deadline_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"sshd exited with {proc.returncode}: {log.read_text()[-2000:]}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5) as s:
                s.settimeout(1.0)
                if s.recv(64).startswith(b"SSH-"):
                    return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"sshd not ready on port {port} after {deadline_s} s: {log.read_text()}")


def write_known_hosts(path: Path, port: int, pubkey_file: Path, address: str = "127.0.0.1") -> None:
    kind, key = pubkey_file.read_text().split()[:2]
    path.write_text(f"[{address}]:{port} {kind} {key}\n")


@contextlib.contextmanager
def running_sshd(tmp: Path, *, ready_timeout: float = 15.0) -> Iterator[SshdServer]:
    """Start sshd on a random free loopback port; stop exactly that process afterwards."""
    if not os.path.exists(SSHD):
        raise RuntimeError(f"{SSHD} missing: apt-get install -y openssh-server")
    if shutil.which("ssh-keygen") is None:
        raise RuntimeError("ssh-keygen missing: apt-get install -y openssh-client")
    if os.geteuid() != 0:
        raise RuntimeError("the sshd fixture must run as root")
    tmp.mkdir(parents=True, exist_ok=True)
    host_key = tmp / "ssh_host_ed25519_key"
    client_key = tmp / "id_ed25519"
    _keygen(host_key)
    _keygen(client_key)
    authorized = tmp / "authorized_keys"
    authorized.write_text(Path(str(client_key) + ".pub").read_text())
    authorized.chmod(0o600)
    # sshd needs its privilege-separation directory.
    Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)
    log = tmp / "sshd.log"
    port = free_port()
    config = tmp / "sshd_config"
    config.write_text(
        "\n".join(
            [
                "ListenAddress 127.0.0.1",
                f"Port {port}",
                f"HostKey {host_key}",
                "PermitRootLogin prohibit-password",
                "PubkeyAuthentication yes",
                "PasswordAuthentication no",
                "KbdInteractiveAuthentication no",
                f"AuthorizedKeysFile {authorized}",
                f"PidFile {tmp / 'sshd.pid'}",
                "StrictModes no",
                "UsePAM no",
                "MaxSessions 64",
                "MaxStartups 64:30:128",
                "LogLevel VERBOSE",
                "",
            ]
        )
    )
    known_hosts = tmp / "known_hosts"
    write_known_hosts(known_hosts, port, Path(str(host_key) + ".pub"))
    with open(log, "wb") as logf:
        proc = subprocess.Popen(
            [SSHD, "-D", "-e", "-f", str(config)],
            stdout=logf,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
    try:
        _wait_ready(port, proc, log, ready_timeout)
        yield SshdServer(
            "127.0.0.1", port, host_key, client_key, known_hosts, config, proc.pid, log
        )
    finally:
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                os.kill(proc.pid, signal.SIGKILL)
                proc.wait(timeout=5)
