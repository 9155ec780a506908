"""Quarantine: take a side out of service until it has been rebuilt and verified.

A side suspected of compromise is not repaired in place: traffic leaves it (when it is
live) through the kernel's one flip path, gated as every flip (the other side must be
verified at its level, its hosts the verified ones, a server UP), and then the side is
marked `quarantined` (audited, with the reason). The kernel's gate refuses a quarantined
side as a flip target, `rollback` included, until a new patch (a rollout, or a rebuild)
and a passing verification make it `verified` again; a verification alone does not lift
it (`record_verification` keeps `quarantined`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from orchestrator.errors import BadInput
from orchestrator.routers.base import Router
from orchestrator.sides import Side, other_side
from orchestrator.state.base import StateStore
from orchestrator.state.models import AuditEntryInput
from orchestrator.traffic.kernel import FlipOutcome, FlipRequest, HostRecheck, move_traffic

COMMAND = "quarantine"


@dataclass(frozen=True)
class QuarantineOutcome:
    service: str
    side: Side
    changed: bool
    """False: the side was quarantined already (nothing recorded again)."""
    message: str
    flip: FlipOutcome | None = None
    """The move of traffic away from the side, when it was live."""

    def as_dict(self) -> dict[str, Any]:
        return {"service": self.service, "side": self.side, "state": "quarantined",
                "changed": self.changed, "message": self.message,
                "flip": self.flip.as_dict() if self.flip is not None else None}


def check_reason(reason: str) -> None:
    """BadInput for an empty reason (before any store is opened)."""
    if not reason.strip():
        raise BadInput("--reason is empty", hint="say why, e.g. --reason INC-4711")


def quarantine_side(store: StateStore, router: Router, service: str, side: Side, reason: str,
                    actor: str, *, recheck_hosts: HostRecheck | None = None
                    ) -> QuarantineOutcome:
    """Move traffic off `side` if it is live (VerificationFailed, nothing changed, when the
    other side may not take traffic), then mark it quarantined with `reason` (audited).
    Idempotent; audited as `quarantine` (both the move and the mark)."""
    check_reason(reason)
    flip: FlipOutcome | None = None
    if router.live(service) == side:
        flip = move_traffic(store, router, FlipRequest(
            service=service, command=COMMAND, reason=reason, actor=actor,
            to=other_side(side), abort_in_flight=True, recheck_hosts=recheck_hosts,
        ))
    current = store.get_side(service, side)
    moved = (f"traffic moved {flip.from_side} -> {flip.to_side}; "
             if flip is not None and flip.changed else "")
    if current is not None and current.state == "quarantined":
        return QuarantineOutcome(service, side, False,
                                 f"{service}: {moved}{side} was already quarantined "
                                 f"({current.state_reason})", flip)
    store.set_side_state(service, side, "quarantined", reason, audit=AuditEntryInput(
        actor=actor, command=COMMAND, service=service, reason=reason,
        before={"side": side, "state": current.state if current else "untouched"},
        after={"side": side, "state": "quarantined",
               "traffic_moved_to": flip.to_side if flip is not None and flip.changed
               else None},
    ))
    return QuarantineOutcome(service, side, True,
                             f"{service}: {moved}{side} is quarantined: no traffic goes to it "
                             "until it is rebuilt (patched) and verified", flip)
