"""The lab network: one bridge, a network namespace and a veth pair per host.

Hosts get an address on the bridge's /24 and no default route, so they cannot reach
anything beyond the bridge.
"""

from __future__ import annotations

import ipaddress
import json
from pathlib import Path

from orchestrator.errors import LabError
from orchestrator.lab.paths import BRIDGE, GATEWAY, NETNS_PREFIX, SUBNET_PREFIX, VETH_PREFIX
from orchestrator.lab.proc import run

SUBNET = ipaddress.ip_network(f"{SUBNET_PREFIX}.0/24")


def check_subnet_free() -> None:
    """Refuse to start when another interface already uses the lab subnet."""
    out = run(["ip", "-j", "route", "show"]).stdout
    for route in json.loads(out or "[]"):
        dst = route.get("dst", "")
        if dst in ("default", "") or route.get("dev") == BRIDGE:
            continue
        try:
            if ipaddress.ip_network(dst, strict=False).overlaps(SUBNET):
                raise LabError(
                    f"the lab subnet {SUBNET} is already routed via {route.get('dev')}",
                    hint="free that subnet, or run `bluegreen lab down` if an old lab holds it",
                )
        except ValueError:
            continue


def ensure_bridge() -> None:
    if Path(f"/sys/class/net/{BRIDGE}").exists():
        return
    run(["ip", "link", "add", BRIDGE, "type", "bridge"])
    run(["ip", "addr", "add", f"{GATEWAY}/24", "dev", BRIDGE])
    run(["ip", "link", "set", BRIDGE, "up"])


def netns_name(host: str) -> str:
    return f"{NETNS_PREFIX}{host}"


def veth_name(index: int) -> str:
    return f"{VETH_PREFIX}{index}"


def create_host_net(host: str, index: int, address: str) -> None:
    ns = netns_name(host)
    veth = veth_name(index)
    run(["ip", "netns", "add", ns])
    run(["ip", "link", "add", veth, "type", "veth", "peer", "name", "eth0", "netns", ns])
    run(["ip", "link", "set", veth, "master", BRIDGE, "up"])
    run(["ip", "-n", ns, "addr", "add", f"{address}/24", "dev", "eth0"])
    run(["ip", "-n", ns, "link", "set", "eth0", "up"])
    run(["ip", "-n", ns, "link", "set", "lo", "up"])


def remove_all() -> None:
    """Delete every lab namespace, veth and the bridge; safe to call when none exist."""
    out = run(["ip", "-j", "netns", "list"], check=False).stdout
    for ns in json.loads(out or "[]"):
        name = ns.get("name", "")
        if name.startswith(NETNS_PREFIX):
            run(["ip", "netns", "del", name], check=False)
    for link in Path("/sys/class/net").iterdir():
        if link.name.startswith(VETH_PREFIX) or link.name == BRIDGE:
            run(["ip", "link", "del", link.name], check=False)


def leftovers() -> list[str]:
    """What of the lab's network is still on this machine (for `down` and tests)."""
    found = []
    out = run(["ip", "-j", "netns", "list"], check=False).stdout
    found += [
        f"netns {n['name']}"
        for n in json.loads(out or "[]")
        if n.get("name", "").startswith(NETNS_PREFIX)
    ]
    found += [
        f"link {link.name}"
        for link in Path("/sys/class/net").iterdir()
        if link.name.startswith(VETH_PREFIX) or link.name == BRIDGE
    ]
    return found
