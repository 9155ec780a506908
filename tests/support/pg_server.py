"""A PostgreSQL server of the test's own (never the shared cluster `./bootstrap.sh postgres`
starts, which other tests and engineers use): `initdb` into a temporary directory, started
with `pg_ctl` on a unix socket in its own directory only (no TCP port), as the `postgres`
OS user when the tests run as root (the server refuses to run as root). The test may
restart or stop it; it is stopped (immediately) and its files removed however the test
ends. Fails (never skips) when Debian's server binaries are missing.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import psycopg
import pytest

PORT = 5432
"""Only names the socket file (`.s.PGSQL.5432`) in the server's own socket directory."""


def _bin_dir() -> Path:
    versions = sorted(Path("/usr/lib/postgresql").glob("*/bin/pg_ctl"),
                      key=lambda p: int(p.parent.parent.name.split(".")[0]))
    if not versions:
        pytest.fail("PostgreSQL's server binaries are not installed (no "
                    "/usr/lib/postgresql/*/bin/pg_ctl)\n  fix: ./bootstrap.sh postgres",
                    pytrace=False)
    return versions[-1].parent


@dataclass
class OwnServer:
    """A running throwaway server: `url` of its database `bluegreen` as this OS user."""

    data: Path
    sockets: Path
    bin: Path
    as_postgres: bool
    user: str

    @property
    def url(self) -> str:
        return f"postgresql:///bluegreen?host={self.sockets}&port={PORT}&user={self.user}"

    def _ctl(self, *args: str, timeout_s: float = 60) -> None:
        command = [str(self.bin / "pg_ctl"), "-D", str(self.data), "-w", "-t",
                   str(int(timeout_s)), *args]
        if self.as_postgres:
            command = ["runuser", "-u", "postgres", "--", *command]
        done = subprocess.run(command, capture_output=True, text=True, timeout=timeout_s + 30,
                              check=False)
        if done.returncode != 0:
            log = (self.data.parent / "server.log")
            tail = log.read_text(errors="replace")[-2000:] if log.exists() else ""
            raise AssertionError(f"pg_ctl {' '.join(args)} failed ({done.returncode}): "
                                 f"{done.stdout}{done.stderr}\n{tail}")

    def start(self) -> None:
        # -l: the server's output to its log, never to pg_ctl's pipes (which the test reads
        # to the end: a server holding them open would hang it)
        options = f"-c listen_addresses='' -p {PORT} -k {self.sockets} -c fsync=off"
        self._ctl("-l", str(self.data.parent / "server.log"), "-o", options, "start")

    def restart(self) -> None:
        """A server restart (`-m fast`: every session is ended, as in a failover or a
        crash-restart): every advisory lock ends with its session."""
        self._ctl("-l", str(self.data.parent / "server.log"), "-m", "fast", "restart")

    def stop(self) -> None:
        self._ctl("-m", "immediate", "stop")

    def running(self) -> bool:
        return (self.data / "postmaster.pid").exists()


@contextmanager
def own_server() -> Iterator[OwnServer]:
    """A fresh server with an empty database `bluegreen` (superuser: this OS user, trust
    authentication on its private socket); stopped and removed afterwards."""
    as_postgres = os.geteuid() == 0
    user = "root" if as_postgres else os.environ.get("USER", "postgres")
    base = Path(tempfile.mkdtemp(prefix="bluegreen-pg-"))
    server = OwnServer(base / "data", base / "sockets", _bin_dir(), as_postgres, user)
    server.sockets.mkdir()
    if as_postgres:
        shutil.chown(base, "postgres")
        shutil.chown(server.sockets, "postgres")
    initdb = [str(server.bin / "initdb"), "-D", str(server.data), "-U", user,
              "--auth=trust", "--no-sync", "-E", "UTF8", "--locale=C"]
    if as_postgres:
        initdb = ["runuser", "-u", "postgres", "--", *initdb]
    try:
        done = subprocess.run(initdb, capture_output=True, text=True, timeout=120,
                              check=False)
        assert done.returncode == 0, f"initdb failed: {done.stdout}{done.stderr}"
        server.start()
        with psycopg.connect(server.url.replace("/bluegreen?", "/postgres?"),
                             autocommit=True) as conn:
            conn.execute("CREATE DATABASE bluegreen")
        yield server
    finally:
        try:
            if server.running():
                server.stop()
        except AssertionError:
            _kill_postmaster(server.data)
        finally:
            shutil.rmtree(base, ignore_errors=True)


def _kill_postmaster(data: Path) -> None:
    """pg_ctl could not stop it: SIGKILL the postmaster named in its pid file (its
    children exit when it is gone)."""
    import signal

    try:
        pid = int((data / "postmaster.pid").read_text().split()[0])
        os.kill(pid, signal.SIGKILL)
    except (OSError, ValueError, IndexError):
        pass
