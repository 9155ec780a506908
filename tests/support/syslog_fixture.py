"""A real syslog collector for tests: Debian's rsyslogd, started as a process of its own
(this machine kind has no systemd, journald or /dev/log) with its own config, listening on
a loopback TCP port and writing every message it receives to a file.

Needs /usr/sbin/rsyslogd (`apt-get install rsyslog`; bootstrap.sh installs it). Only the
PID this module started is ever stopped.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

from tests.support.sshd_fixture import free_port

RSYSLOGD = "/usr/sbin/rsyslogd"


@dataclasses.dataclass(frozen=True)
class SyslogCollector:
    address: str
    """tcp://127.0.0.1:PORT, as audit.witness.syslog takes it."""
    port: int
    log: Path
    """What the collector wrote: one line per message received."""
    pid: int

    def wait_for(self, text: str, deadline_s: float = 10.0) -> str:
        """The collector's file once it holds `text` (rsyslog writes asynchronously)."""
        deadline = time.monotonic() + deadline_s
        while True:
            content = self.log.read_text() if self.log.exists() else ""
            if text in content:
                return content
            if time.monotonic() > deadline:
                raise AssertionError(f"{text!r} not in {self.log} after {deadline_s} s: "
                                     f"{content[-2000:]!r}")
            time.sleep(0.05)


def _config(workdir: Path, port: int, log: Path) -> str:
    return f"""
global(workDirectory="{workdir}")
module(load="imtcp")
template(name="bg" type="string"
         string="%timegenerated:::date-rfc3339% %hostname% %app-name% %msg%\\n")
ruleset(name="collect") {{
  action(type="omfile" file="{log}" template="bg" flushOnTXEnd="on" asyncWriting="off")
}}
input(type="imtcp" address="127.0.0.1" port="{port}" ruleset="collect")
"""


@contextlib.contextmanager
def syslog_collector(tmp: Path, deadline_s: float = 15.0) -> Iterator[SyslogCollector]:
    if not os.access(RSYSLOGD, os.X_OK):
        raise RuntimeError(f"{RSYSLOGD} is missing: apt-get install rsyslog (bootstrap.sh "
                           "setup does)")
    workdir = tmp / "rsyslog"
    workdir.mkdir(mode=0o700, exist_ok=True)
    port = free_port()
    log = workdir / "collector.log"
    conf = workdir / "rsyslog.conf"
    conf.write_text(_config(workdir, port, log))
    pidfile = workdir / "rsyslogd.pid"
    err = workdir / "rsyslogd.err"
    with err.open("wb") as err_fh:
        proc = subprocess.Popen(
            [RSYSLOGD, "-n", "-f", str(conf), "-i", str(pidfile)],
            stdin=subprocess.DEVNULL, stdout=err_fh, stderr=subprocess.STDOUT,
        )
    try:
        _wait_listening(port, proc, err, deadline_s)
        yield SyslogCollector(address=f"tcp://127.0.0.1:{port}", port=port, log=log,
                              pid=proc.pid)
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=10)


def _wait_listening(port: int, proc: subprocess.Popen[bytes], err: Path,
                    deadline_s: float) -> None:
    import socket

    deadline = time.monotonic() + deadline_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"rsyslogd exited with {proc.returncode}: "
                               f"{err.read_text()[-2000:]}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"rsyslogd did not listen on 127.0.0.1:{port} within {deadline_s} s")
