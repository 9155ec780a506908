"""Faults the lab can inject into a host, and how each is undone (`heal`)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
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


@dataclass(frozen=True)
class FaultTarget:
    """One lab host, as the fault actions need it."""

    paths: LabPaths
    host: str
    index: int
    nspawn_pid: int
    root: Path
    site_netns: str | None = None
    """The namespace of the host's site (`lab up --sites`), where its veth is."""

    @property
    def veth(self) -> str:
        return net.veth_name(self.paths, self.index)

    def outside(self, tool: str, *argv: str) -> list[str]:
        """`ip`/`tc` on the host's veth, in its site's namespace when it has one."""
        return [tool, *(["-n", self.site_netns] if self.site_netns else []), *argv]

    def in_netns(self, argv: list[str]) -> list[str]:
        return ["ip", "netns", "exec", net.netns_name(self.paths, self.host), *argv]


def _link(state: str) -> Callable[[FaultTarget], None]:
    def act(t: FaultTarget) -> None:
        run(t.outside("ip", "link", "set", t.veth, state))

    return act


def _unit(action: str, unit: str) -> Callable[[FaultTarget], None]:
    def act(t: FaultTarget) -> None:
        exec_in(t.nspawn_pid, ["systemctl", action, unit])

    return act


def _slow_on(t: FaultTarget) -> None:
    run(t.outside("tc", "qdisc", "replace", "dev", t.veth, "root", *SLOW))
    run(t.in_netns(["tc", "qdisc", "replace", "dev", "eth0", "root", *SLOW]))


def _slow_off(t: FaultTarget) -> None:
    run(t.outside("tc", "qdisc", "del", "dev", t.veth, "root"), check=False)
    run(t.in_netns(["tc", "qdisc", "del", "dev", "eth0", "root"]), check=False)


def _fill_disk(t: FaultTarget) -> None:
    # write until ENOSPC (fallocate is not supported by every tmpfs), then fill the rest
    with open((t.root / FILL_FILE).resolve(), "wb", buffering=0) as f:
        for size in (1 << 20, 4096):
            chunk = b"\0" * size
            try:
                while True:
                    f.write(chunk)
            except OSError:
                pass


def _free_disk(t: FaultTarget) -> None:
    (t.root / FILL_FILE).resolve().unlink(missing_ok=True)


#: kind -> (inject, undo)
ACTIONS: dict[str, tuple[Callable[[FaultTarget], None], Callable[[FaultTarget], None]]] = {
    "unreachable": (_link("down"), _link("up")),
    "sshd-down": (_unit("stop", "ssh.service"), _unit("start", "ssh.service")),
    "service-down": (_unit("stop", "demo-web.service"), _unit("start", "demo-web.service")),
    "slow": (_slow_on, _slow_off),
    "disk-full": (_fill_disk, _free_disk),
}


def inject(kind: str, target: FaultTarget) -> None:
    check_kind(kind)
    ACTIONS[kind][0](target)


def undo(kind: str, target: FaultTarget) -> None:
    check_kind(kind)
    ACTIONS[kind][1](target)
