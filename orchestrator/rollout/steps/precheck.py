"""The precheck: the router says which side is live (the store must agree, the kernel
settles an interrupted flip first); both sides must answer over SSH; and `bluegreen
doctor`'s checks of the service pass (`RolloutTools.readiness`: strict SSH as the probes
and Ansible connect, sudo, root, the router's socket level, map, backends, server state and
confirm header) before any host is touched. A failed check stops the run with its fix."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from orchestrator.doctor.report import first_failure
from orchestrator.errors import BluegreenError
from orchestrator.rollout.context import RunContext
from orchestrator.rollout.records import Plan
from orchestrator.sides import other_side
from orchestrator.traffic import settle


class Precheck:
    name = "precheck"

    def run(self, ctx: RunContext) -> Plan:
        service = ctx.service
        live = settle(ctx.store, ctx.router, service, ctx.actor)
        standby = other_side(live)
        hosts = ctx.fleet.service(service) if ctx.fleet is not None else None
        unreachable = ctx.tools.unreachable([*hosts.blue, *hosts.green] if hosts else [])
        if unreachable:
            raise BluegreenError(
                f"{service}: unreachable over SSH: {', '.join(unreachable)}",
                hint="both sides must be reachable before a rollout; check the hosts or the network",
            )
        failed = [c for c in ctx.tools.readiness(ctx.config, ctx.router, service, ctx.fleet)
                  if c.failed]
        if failed:
            raise BluegreenError(
                f"{service}: not ready, no host was touched: {first_failure(failed)}",
                hint=f"{failed[0].fix} (`bluegreen doctor {service}` shows every check)",
            )
        ctx.plan = Plan(live, standby, tuple(h.name for h in hosts.side(standby)) if hosts else ())
        return ctx.plan

    def resume(self, ctx: RunContext, ended: Mapping[str, Any]) -> None:
        ctx.plan = Plan.from_dict(ended)
