"""Side marks the kernel writes under the traffic lock without moving traffic (kept apart
from `kernel.py` so the one flip path stays readable). Imports: `state` only."""

from __future__ import annotations

from orchestrator.sides import Side
from orchestrator.state.base import StateStore
from orchestrator.state.models import AuditEntryInput


def quarantine_standby(store: StateStore, service: str, side: Side, reason: str, actor: str,
                       command: str, command_reason: str) -> str:
    """Mark the standby `side` quarantined; the caller holds the traffic lock (so no flip
    is between its gate and its record now). A side quarantined already keeps its first
    reason. Returns what was done."""
    current = store.get_side(service, side)
    if current is not None and current.state == "quarantined":
        return f"{service}: {side} was already quarantined ({current.state_reason})"
    store.quarantine(service, side, reason, audit=AuditEntryInput(
        actor=actor, command=command, service=service, reason=command_reason, result="marked",
        before={"side": side, "state": current.state if current else "untouched"},
        after={"side": side, "state": "quarantined", "traffic_moved_to": None}))
    return f"{service}: {side} is quarantined"
