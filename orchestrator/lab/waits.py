"""Waiting for the lab's parts with a deadline (tenacity), and the small probes it waits on."""

from __future__ import annotations

import socket
import urllib.request
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor

from orchestrator.errors import LabError
from orchestrator.lab.hosts import HostSpec
from orchestrator.lab.net import call_in_netns
from orchestrator.lab.paths import LabPaths
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


def wait_hosts(paths: LabPaths, pids: Mapping[str, int], specs: Sequence[HostSpec],
               netns: Callable[[HostSpec], str | None]) -> None:
    """Until every host answers SSH and demo-web's health (from its site's namespace,
    `netns(spec)`, when it has one)."""
    # all hosts boot at once: on 2 cores, 100 of them take minutes, not seconds
    timeout = 90 + 3 * len(specs)

    def ready(spec: HostSpec) -> None:
        console = paths.logs / (spec.name + ".console.log")

        def up() -> bool:
            return ssh_banner(spec.address) and http_ok(f"http://{spec.address}:8080/health")

        def check() -> bool:
            if not alive(pids[spec.name]):
                raise LabError(f"lab host {spec.name} stopped while booting",
                               hint=f"see {console}")
            ns = netns(spec)
            return call_in_netns(ns, up) if ns else up()

        wait(check, timeout, f"{spec.name} (sshd and demo-web)", f"see {console}")

    with ThreadPoolExecutor(max_workers=min(16, len(specs))) as pool:
        list(pool.map(ready, specs))
