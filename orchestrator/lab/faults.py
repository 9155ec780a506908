"""Faults the lab can inject into a host, and how each is undone (`heal`)."""

from __future__ import annotations

from pathlib import Path

from orchestrator.errors import BadInput
from orchestrator.lab import net
from orchestrator.lab.hosts import exec_in
from orchestrator.lab.paths import LabPaths
from orchestrator.lab.proc import run

# The filler lives on the host's tmpfs next to (not inside) the overlay's upper dir: the
# container sees its root filesystem full, and nothing of it shows up inside the host.
FILL_FILE = "../disk/fill"
# netem is not in every kernel (not in this lab's); a token bucket on both ends of the
# host's link is: at 64 kbit/s every SSH round trip, apt download and HTTP reply crawls.
SLOW = ["tbf", "rate", "64kbit", "burst", "2kb", "latency", "10s"]

KINDS = {
    "unreachable": "link of the host is down (no packet in or out)",
    "sshd-down": "sshd is stopped on the host",
    "service-down": "demo-web is stopped on the host",
    "slow": "the host's link is limited to 64 kbit/s in both directions",
    "disk-full": "the host's root filesystem is filled to the last block",
}


def check_kind(kind: str) -> None:
    if kind not in KINDS:
        raise BadInput(f"unknown fault kind {kind!r}", hint=f"use one of: {', '.join(KINDS)}")


def inject(
    kind: str, paths: LabPaths, *, host: str, index: int, nspawn_pid: int, root: Path
) -> None:
    check_kind(kind)
    veth = net.veth_name(paths, index)
    if kind == "unreachable":
        run(["ip", "link", "set", veth, "down"])
    elif kind == "sshd-down":
        exec_in(nspawn_pid, ["systemctl", "stop", "ssh.service"])
    elif kind == "service-down":
        exec_in(nspawn_pid, ["systemctl", "stop", "demo-web.service"])
    elif kind == "slow":
        run(["tc", "qdisc", "replace", "dev", veth, "root", *SLOW])
        run(
            [
                "ip",
                "netns",
                "exec",
                net.netns_name(paths, host),
                "tc",
                "qdisc",
                "replace",
                "dev",
                "eth0",
                "root",
                *SLOW,
            ]
        )
    elif kind == "disk-full":
        fill = (root / FILL_FILE).resolve()
        # write until ENOSPC (fallocate is not supported by every tmpfs)
        chunk = b"\0" * (1 << 20)
        with open(fill, "wb", buffering=0) as f:
            try:
                while True:
                    f.write(chunk)
            except OSError:
                pass
            try:
                while True:
                    f.write(b"\0" * 4096)
            except OSError:
                pass


def undo(kind: str, paths: LabPaths, *, host: str, index: int, nspawn_pid: int, root: Path) -> None:
    veth = net.veth_name(paths, index)
    if kind == "unreachable":
        run(["ip", "link", "set", veth, "up"])
    elif kind == "sshd-down":
        exec_in(nspawn_pid, ["systemctl", "start", "ssh.service"])
    elif kind == "service-down":
        exec_in(nspawn_pid, ["systemctl", "start", "demo-web.service"])
    elif kind == "slow":
        run(["tc", "qdisc", "del", "dev", veth, "root"], check=False)
        run(
            [
                "ip",
                "netns",
                "exec",
                net.netns_name(paths, host),
                "tc",
                "qdisc",
                "del",
                "dev",
                "eth0",
                "root",
            ],
            check=False,
        )
    elif kind == "disk-full":
        (root / FILL_FILE).resolve().unlink(missing_ok=True)
