"""A verification that judged nothing is an error, not a verdict.

When every host whose results failed cannot be connected to from this machine (host key
unknown in our known_hosts, our key refused, unreachable: `probes.reach`), no check ran on
those hosts: the mistake may be the orchestrator's own (a known_hosts without their keys).
Recording `verify_failed` would demote a healthy, verified side and cost the rollback side;
so nothing is recorded for the side, an audit record `verify.error` names each host and
why, and the caller gets `CannotVerify` (exit 1) with the fix.
"""

from __future__ import annotations

from collections.abc import Sequence

from orchestrator.errors import BluegreenError
from orchestrator.probes.base import ProbeReport, ProbeTarget
from orchestrator.sides import Side
from orchestrator.state.base import StateStore
from orchestrator.state.models import AuditEntryInput


class CannotVerify(BluegreenError):
    """No verdict: the gate could not reach the hosts it judged (see the module)."""


def refuse_unjudged(store: StateStore, service: str, side: Side, report: ProbeReport,
                    targets: Sequence[ProbeTarget], *, actor: str, record: bool) -> None:
    """Raise CannotVerify (after auditing it, with `record`) when the failed `report` judged
    nothing; return when its failures are a verdict."""
    from orchestrator.probes.reach import unreached

    why = unreached(targets, {r.host for r in report.failures})
    if not why:
        return
    if record:
        store.audit_append(AuditEntryInput(
            actor=actor, command="verify.error", service=service,
            reason="no verdict: the hosts could not be connected to from here",
            after={"side": side, "unreached": dict(sorted(why.items()))}))
    hosts = "; ".join(f"{host}: {reason}" for host, reason in sorted(why.items()))
    raise CannotVerify(
        f"{service}: {side} was not verified: this machine cannot connect to "
        f"{len(why)} host(s) ({hosts}); no verdict was recorded, {side} keeps its state",
        hint=f"fix this machine's SSH setup (`bluegreen doctor {service}` names each fix), then"
        f" verify again: `bluegreen verify {service} --side {side}` (a rollout: `bluegreen "
        f"rollout {service}` again; its patch is idempotent)")
