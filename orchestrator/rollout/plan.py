"""`bluegreen plan`: what a rollout would do, computed without changing anything.

The router is asked which side is live; Ansible runs the patch playbook in check mode on the
standby (only package lists are refreshed there, never a package); the router commands that
the flip would send are listed, with the router's own checks (`routers.base.SelfChecking`,
e.g. HAProxy's socket level): a failed one marks the commands as failing (`set map` on a
socket at `level operator` would be refused).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from orchestrator.config.loaded import LoadedConfig
from orchestrator.config.models import PackageSpec
from orchestrator.routers.base import Check, Router
from orchestrator.sides import other_side


@dataclass(frozen=True)
class RolloutPlan:
    service: str
    live: str
    standby: str
    packages: list[str]
    hosts: dict[str, dict[str, Any]]
    router_commands: list[str]
    ok: bool
    message: str | None
    router_problems: list[Check] = field(default_factory=list)
    """The router's failed checks: its commands would fail."""

    def as_dict(self) -> dict[str, Any]:
        return {"service": self.service, "live": self.live, "standby": self.standby,
                "packages": self.packages, "hosts": self.hosts,
                "router_commands": self.router_commands,
                "router_problems": [c.as_dict() for c in self.router_problems],
                "ok": self.ok, "message": self.message}


def plan_rollout(config: LoadedConfig, router: Router, service: str,
                 packages: Sequence[PackageSpec] = ()) -> RolloutPlan:
    from orchestrator.patching import patch_hosts

    svc = config.service(service)
    chosen = list(packages) or list(svc.patch.packages)
    live = router.live(service)
    standby = other_side(live)
    result = patch_hosts(config, service, standby, chosen or None, check_mode=True)
    hosts = {
        name: {"reachable": not r.unreachable, "ok": r.ok, "message": r.message,
               "changes": {c.name: {"from": c.current, "to": c.new}
                           for c in r.would_change.values()}}
        for name, r in result.hosts.items()
    }
    commands = config.router.flip_commands(service, standby)
    readiness = getattr(router, "readiness", None)
    problems = [c for c in (readiness([service]) if readiness else []) if c.failed]
    messages = ([] if result.ok else result.failures()) + [
        f"the flip would fail: {c.name}: {c.detail}; fix: {c.fix}" for c in problems]
    return RolloutPlan(service, live, standby,
                       [str(p) for p in chosen] or ["security updates"], hosts, commands,
                       result.ok and not problems, "; ".join(messages) or None, problems)
