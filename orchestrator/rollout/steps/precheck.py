"""The precheck: the router says which side is live (the store must agree, the kernel
settles an interrupted flip first); both sides must answer over SSH."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from orchestrator.errors import BluegreenError
from orchestrator.rollout.context import RunContext
from orchestrator.rollout.records import Plan
from orchestrator.sides import Side, other_side
from orchestrator.traffic import settle


class Precheck:
    name = "precheck"

    def run(self, ctx: RunContext) -> Plan:
        service = ctx.service
        live = settle(ctx.store, ctx.router, service, ctx.actor)
        standby = other_side(live)
        unreachable = ctx.tools.unreachable(ctx.config, service)
        if unreachable:
            raise BluegreenError(
                f"{service}: unreachable over SSH: {', '.join(unreachable)}",
                hint="both sides must be reachable before a rollout; check the hosts or the network",
            )
        ctx.plan = Plan(live, standby, tuple(self._hosts_of(ctx, standby)))
        return ctx.plan

    def resume(self, ctx: RunContext, ended: Mapping[str, Any]) -> None:
        ctx.plan = Plan.from_dict(ended)

    @staticmethod
    def _hosts_of(ctx: RunContext, side: Side) -> list[str]:
        if not ctx.tools.check_inputs:
            return []
        from orchestrator.inventory import load_fleet

        return [h.name for h in load_fleet(ctx.config).service(ctx.service).side(side)]
