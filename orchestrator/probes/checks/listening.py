"""`listening`: the TCP ports that must listen, and (with `allow`) the only ones that may.

In bluegreen.yml (one item of a service's `checks:`)::

    - {kind: listening, ports: [22, 8080], allow: [68]}
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Iterable
from typing import Any, Literal

from pydantic import Field

from orchestrator.probes.base import ProbeTarget
from orchestrator.probes.checks.base import BaseCheck, Outcome, run_command


@dataclasses.dataclass(frozen=True)
class Listener:
    address: str
    port: int
    processes: tuple[str, ...] = ()

    def describe(self) -> str:
        procs = ", ".join(self.processes) or "unknown process"
        return f"port {self.port} on {self.address} ({procs})"


_SS_PROC_RE = re.compile(r'\("([^"]*)",pid=(\d+)')


def parse_ss_listening(output: str) -> list[Listener]:
    """Parse `ss -Htlnp` lines: State Recv-Q Send-Q Local:Port Peer:Port [users:(...)]."""
    listeners: list[Listener] = []
    for line in output.splitlines():
        parts = line.split(None, 5)
        if len(parts) < 5 or parts[0] != "LISTEN":
            continue
        local = parts[3]
        addr, sep, port = local.rpartition(":")
        if not sep or not port.isdigit():
            continue
        addr = addr.split("%", 1)[0].strip("[]")
        rest = parts[5] if len(parts) > 5 else ""
        procs = tuple(f"{comm} pid {pid}" for comm, pid in _SS_PROC_RE.findall(rest))
        listeners.append(Listener(addr, int(port), procs))
    return listeners


class ListeningCheck(BaseCheck):
    """`ports` must listen (TCP); with `allow`, any other listening TCP port fails."""

    kind: Literal["listening"]
    ports: list[int] = Field(default_factory=list)
    allow: list[int] | None = None

    def outcomes(self, host: Any, target: ProbeTarget) -> Iterable[Outcome]:
        rc, out, err = run_command(host, "ss -Htlnp")
        if rc != 0:
            yield self.primary_id(), "error", f"ss -Htlnp failed (rc {rc}): {err.strip()}"
            return
        listeners = parse_ss_listening(out)
        listening_ports = {x.port for x in listeners}
        for port in self.ports:
            cid = self.check_id(str(port))
            if port in listening_ports:
                who = [x.describe() for x in listeners if x.port == port]
                yield cid, "pass", "listening: " + "; ".join(who)
            else:
                yield cid, "fail", f"nothing listens on TCP port {port}"
        if self.allow is not None:
            allowed = set(self.ports) | set(self.allow)
            extra = [x for x in listeners if x.port not in allowed]
            cid = self.check_id("allow-list")
            if extra:
                yield (
                    cid,
                    "fail",
                    "unexpected listening TCP " + "; ".join(x.describe() for x in extra),
                )
            else:
                yield cid, "pass", f"only allowed ports listen: {sorted(listening_ports)}"
        if not self.ports and self.allow is None:
            yield self.primary_id(), "error", "nothing to check: give ports and/or allow"
