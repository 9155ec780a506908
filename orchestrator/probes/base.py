"""Contract of the probe engine: targets in, results per host per check out.

Rule of the whole package: no data, a timeout or an unreachable host is a failure
("fail" or "error") with its reason, never a pass. A host with zero results is a failure.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Literal, Protocol

from orchestrator.processes import MAX_OUTPUT

Status = Literal["pass", "fail", "error"]


@dataclasses.dataclass(frozen=True)
class ProbeTarget:
    """One host to probe over SSH with strict host-key checking."""

    name: str
    address: str
    known_hosts: str
    port: int = 22
    user: str = "root"
    key_file: str | None = None
    connect_timeout: float = 5.0
    max_output: int = MAX_OUTPUT
    """Bytes one command may answer (stdout and stderr together); more is an error."""
    become: bool = False
    """Run every command as root through `sudo -n` (`ssh.become`)."""

    @property
    def known_hosts_name(self) -> str:
        """The name looked up in known_hosts (`[host]:port` when the port is not 22)."""
        if self.port == 22:
            return self.address
        return f"[{self.address}]:{self.port}"


@dataclasses.dataclass(frozen=True)
class CheckResult:
    host: str
    check: str
    status: Status
    evidence: str
    seconds: float = 0.0

    @property
    def passed(self) -> bool:
        return self.status == "pass"


@dataclasses.dataclass
class ProbeReport:
    results: list[CheckResult]
    started_at: float
    seconds: float
    hosts: tuple[str, ...] = ()
    """Hosts that were asked for: one of them without any result makes the report not ok."""

    @property
    def ok(self) -> bool:
        if not self.results:
            return False
        if any(r.status != "pass" for r in self.results):
            return False
        seen = {r.host for r in self.results}
        return all(h in seen for h in self.hosts)

    @property
    def failures(self) -> list[CheckResult]:
        out = [r for r in self.results if r.status != "pass"]
        seen = {r.host for r in self.results}
        for h in self.hosts:
            if h not in seen:
                out.append(CheckResult(h, "host", "error", "no results for this host", 0.0))
        return out

    def by_host(self) -> dict[str, list[CheckResult]]:
        grouped: dict[str, list[CheckResult]] = {h: [] for h in self.hosts}
        for r in self.results:
            grouped.setdefault(r.host, []).append(r)
        return grouped

    def summary(self) -> str:
        passed = sum(1 for r in self.results if r.status == "pass")
        return f"{passed}/{len(self.results)} checks passed on {len(self.by_host())} host(s)"


class Probe(Protocol):
    def run(self, targets: Sequence[ProbeTarget], deadline_s: float) -> ProbeReport: ...
