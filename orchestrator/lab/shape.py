"""What a lab is made of (`LabShape`: services, hosts per side, state store), what a running
lab is (`LabState`, saved as lab.json under the lab's root) and what `up` answers."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import Any

from orchestrator.errors import BadInput
from orchestrator.lab.hosts import HostSpec
from orchestrator.lab.sites import SiteState, check_shape

SERVICE_NAME = r"^[a-z][a-z0-9]{0,9}$"
# Host addresses are .11 up in the lab's /24; 200 hosts (~20 MB each) also fit in memory.
MAX_HOSTS_PER_SIDE = 50
MAX_HOSTS = 200



ROUTERS = ("haproxy", "nginx")


@dataclass(frozen=True)
class LabShape:
    services: tuple[str, ...] = ("web", "api")
    hosts_per_side: int = 2
    state_url: str | None = None
    """The lab's state store when not its SQLite file (`lab up --state`)."""
    router: str = "haproxy"
    """The load balancer in front of the pools: haproxy or nginx (`lab up --router`)."""
    sites: int = 0
    """`lab up --sites N`: the services shared between N sites (sites.py); 0: none."""

    def validate(self) -> None:
        import re

        if self.router not in ROUTERS:
            raise BadInput(f"--router {self.router!r}: not a lab load balancer",
                           hint=f"use one of: {', '.join(ROUTERS)}")
        if not self.services:
            raise BadInput("--services: no service given", hint="e.g. --services web,api")
        for s in self.services:
            if not re.match(SERVICE_NAME, s):
                raise BadInput(
                    f"--services: invalid lab service name {s!r}",
                    hint="use 1-10 lowercase letters/digits, starting with a letter",
                )
        if len(set(self.services)) != len(self.services):
            raise BadInput("--services: a service is named twice", hint="name each service once")
        total = len(self.services) * 2 * self.hosts_per_side
        if not 1 <= self.hosts_per_side <= MAX_HOSTS_PER_SIDE or total > MAX_HOSTS:
            raise BadInput(
                f"--hosts-per-side {self.hosts_per_side}: out of range"
                f" ({total} hosts for {len(self.services)} service(s))",
                hint=f"use 1..{MAX_HOSTS_PER_SIDE}, and at most {MAX_HOSTS} hosts in all"
                " (services x 2 sides x hosts per side)",
            )
        why = check_shape(self.sites, self.services, self.router) if self.sites else None
        if why:
            raise BadInput(why, hint="e.g. --services web,api --sites 2")

    def host_specs(self, subnet_prefix: str) -> list[HostSpec]:
        specs = []
        index = 0
        for service in self.services:
            for side in ("blue", "green"):
                for n in range(1, self.hosts_per_side + 1):
                    specs.append(
                        HostSpec(
                            f"{service}-{side}-{n}",
                            service,
                            side,
                            index,
                            f"{subnet_prefix}.{11 + index}",
                        )
                    )
                    index += 1
        return specs


@dataclass
class LabState:
    shape: LabShape
    hosts: list[HostSpec]
    pids: dict[str, int] = field(default_factory=dict)
    haproxy_pid: int = 0
    """The load balancer's PID: HAProxy's, or nginx's master (shape.router)."""
    repo_pid: int = 0
    prometheus_pid: int = 0
    faults: dict[str, list[str]] = field(default_factory=dict)
    sites: list[SiteState] = field(default_factory=list)
    """`lab up --sites N`: each site's namespace, HAProxy and repository server."""

    def to_json(self) -> str:
        doc = asdict(self)
        return json.dumps(doc, indent=2)

    @classmethod
    def from_json(cls, text: str) -> LabState:
        doc = json.loads(text)
        shape = LabShape(tuple(doc["shape"]["services"]), int(doc["shape"]["hosts_per_side"]),
                         doc["shape"].get("state_url"), doc["shape"].get("router", "haproxy"),
                         int(doc["shape"].get("sites", 0)))
        return cls(
            shape=shape,
            hosts=[HostSpec(**h) for h in doc["hosts"]],
            pids={k: int(v) for k, v in doc["pids"].items()},
            haproxy_pid=int(doc["haproxy_pid"]),
            repo_pid=int(doc["repo_pid"]),
            prometheus_pid=int(doc.get("prometheus_pid", 0)),
            faults={k: list(v) for k, v in doc.get("faults", {}).items()},
            sites=[SiteState(**s) for s in doc.get("sites", [])],
        )


@dataclass(frozen=True)
class UpResult:
    changed: bool
    seconds: float
    status: dict[str, Any]

