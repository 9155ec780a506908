"""The lab network: one bridge, a network namespace and a veth pair per host.

Hosts get an address on the bridge's /24 and no default route, so they cannot reach
anything beyond the bridge.
"""

from __future__ import annotations

import ctypes
import ipaddress
import json
import os
import threading
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from orchestrator.errors import LabError
from orchestrator.lab.paths import LabPaths
from orchestrator.lab.proc import run

T = TypeVar("T")
_CLONE_NEWNET = 0x40000000


def check_subnet_free(paths: LabPaths) -> None:
    """Refuse to start when another interface already uses the lab subnet."""
    subnet = ipaddress.ip_network(f"{paths.subnet_prefix}.0/24")
    out = run(["ip", "-j", "route", "show"]).stdout
    for route in json.loads(out or "[]"):
        dst = route.get("dst", "")
        if dst in ("default", "") or route.get("dev") == paths.bridge:
            continue
        try:
            if ipaddress.ip_network(dst, strict=False).overlaps(subnet):
                raise LabError(
                    f"the lab subnet {subnet} is already routed via {route.get('dev')}",
                    hint="free that subnet, or run `bluegreen lab down` if an old lab holds it",
                )
        except ValueError:
            continue


def ensure_bridge(paths: LabPaths) -> None:
    if Path(f"/sys/class/net/{paths.bridge}").exists():
        return
    run(["ip", "link", "add", paths.bridge, "type", "bridge"])
    run(["ip", "addr", "add", f"{paths.gateway}/24", "dev", paths.bridge])
    run(["ip", "link", "set", paths.bridge, "up"])


def netns_name(paths: LabPaths, host: str) -> str:
    return f"{paths.netns_prefix}{host}"


def veth_name(paths: LabPaths, index: int) -> str:
    return f"{paths.veth_prefix}{index}"


def create_host_net(paths: LabPaths, host: str, index: int, address: str,
                    site: tuple[str, str] | None = None) -> None:
    """`site`: (namespace, bridge) of the host's site (sites.py), where its veth goes
    instead of the lab's bridge in the root namespace."""
    ns = netns_name(paths, host)
    veth = veth_name(paths, index)
    ip, bridge = (["ip", "-n", site[0]], site[1]) if site else (["ip"], paths.bridge)
    run(["ip", "netns", "add", ns])
    run([*ip, "link", "add", veth, "type", "veth", "peer", "name", "eth0", "netns", ns])
    run([*ip, "link", "set", veth, "master", bridge, "up"])
    run(["ip", "-n", ns, "addr", "add", f"{address}/24", "dev", "eth0"])
    run(["ip", "-n", ns, "link", "set", "eth0", "up"])
    run(["ip", "-n", ns, "link", "set", "lo", "up"])


def remove_all(paths: LabPaths) -> None:
    """Delete every lab namespace, veth and the bridge; safe to call when none exist."""
    out = run(["ip", "-j", "netns", "list"], check=False).stdout
    for ns in json.loads(out or "[]"):
        name = ns.get("name", "")
        if name.startswith(paths.netns_prefix):
            run(["ip", "netns", "del", name], check=False)
    for link in Path("/sys/class/net").iterdir():
        if link.name.startswith(paths.veth_prefix) or link.name == paths.bridge:
            run(["ip", "link", "del", link.name], check=False)


def leftovers(paths: LabPaths) -> list[str]:
    """What of the lab's network is still on this machine (for `down` and tests)."""
    found = []
    out = run(["ip", "-j", "netns", "list"], check=False).stdout
    found += [
        f"netns {n['name']}"
        for n in json.loads(out or "[]")
        if n.get("name", "").startswith(paths.netns_prefix)
    ]
    found += [
        f"link {link.name}"
        for link in Path("/sys/class/net").iterdir()
        if link.name.startswith(paths.veth_prefix) or link.name == paths.bridge
    ]
    return found


def call_in_netns(netns: str, fn: Callable[[], T]) -> T:
    """`fn()` in a thread of its own that entered `netns` (setns is per thread): its
    sockets are the namespace's. The thread ends with the call."""
    result: list[T] = []
    error: list[BaseException] = []

    def body() -> None:
        try:
            fd = os.open(f"/run/netns/{netns}", os.O_RDONLY)
            try:
                libc = ctypes.CDLL(None, use_errno=True)
                if libc.setns(fd, _CLONE_NEWNET) != 0:
                    err = ctypes.get_errno()
                    raise OSError(err, f"setns({netns}): {os.strerror(err)}")
            finally:
                os.close(fd)
            result.append(fn())
        except BaseException as exc:  # noqa: BLE001 - handed to the caller's thread
            error.append(exc)

    thread = threading.Thread(target=body, name=f"netns-{netns}", daemon=True)
    thread.start()
    thread.join()
    if error:
        raise error[0]
    return result[0]
