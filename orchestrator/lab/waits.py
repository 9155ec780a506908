"""Waiting for the lab's parts with a deadline (tenacity), and the small probes it waits on."""

from __future__ import annotations

import socket
import urllib.request
from collections.abc import Callable

from orchestrator.errors import LabError
from orchestrator.lab.proc import alive


def wait(check: Callable[[], bool], timeout: float, what: str, hint: str) -> None:
    from tenacity import Retrying, retry_if_result, stop_after_delay, wait_fixed

    def failed(_state: object) -> bool:
        return False

    def not_ok(ok: bool) -> bool:
        return not ok

    retrying = Retrying(
        stop=stop_after_delay(timeout),
        wait=wait_fixed(0.2),
        retry=retry_if_result(not_ok),
        retry_error_callback=failed,
    )
    if not retrying(check):
        raise LabError(f"timed out after {timeout:.0f}s waiting for {what}", hint=hint or None)



def dead(pid: int) -> bool:
    return not alive(pid)


def tcp_open(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


def ssh_banner(host: str) -> bool:
    try:
        with socket.create_connection((host, 22), timeout=0.5) as s:
            s.settimeout(1)
            return s.recv(64).startswith(b"SSH-")
    except OSError:
        return False


def http_ok(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=1) as r:
            return bool(r.status == 200)
    except OSError:
        return False
