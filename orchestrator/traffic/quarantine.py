"""Quarantine: take a side out of service until it has been rebuilt and verified.

A side suspected of compromise is not repaired in place: traffic leaves it (when it is
live) through the kernel's one flip path, gated as every flip (the other side must be
verified at its level, its hosts the verified ones, a server UP), and the side is marked
`quarantined` (audited, with the reason) in the same transaction as that flip's record; a
standby is marked under the same traffic lock. One kernel operation: a rollback or a crash
cannot come between the move and the mark. The kernel's gate refuses a quarantined
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
                    actor: str, *, recheck_hosts: HostRecheck | None = None,
                    lock_timeout_s: float = 30.0) -> QuarantineOutcome:
    """Quarantine `side`: one kernel operation under the service's traffic lock. Live:
    traffic moves to the other side (VerificationFailed, nothing changed, when that one may
    not take traffic) and the mark is written in the flip's own record (a crash after the
    router moved leaves the mark to the next traffic command, which records both).
    Standby: marked under the lock, so no flip is between its gate and its record. Either
    way the service's runs in flight are aborted (they stop at their next boundary).
    Idempotent; audited as `quarantine`."""
    check_reason(reason)
    before = store.get_side(service, side)
    flip = move_traffic(store, router, FlipRequest(
        service=service, command=COMMAND, reason=reason, actor=actor, to=other_side(side),
        abort_in_flight=True, recheck_hosts=recheck_hosts, quarantine=reason,
        lock_timeout_s=lock_timeout_s,
    ))
    moved = f"traffic moved {flip.from_side} -> {flip.to_side}; " if flip.changed else ""
    aborted = f"; aborted run {flip.aborted_run}" if flip.aborted_run else ""
    if not flip.changed and before is not None and before.state == "quarantined":
        return QuarantineOutcome(service, side, False,
                                 f"{service}: {side} was already quarantined "
                                 f"({before.state_reason}){aborted}", None)
    return QuarantineOutcome(service, side, True,
                             f"{service}: {moved}{side} is quarantined: no traffic goes to it "
                             f"until it is rebuilt (patched) and verified{aborted}",
                             flip if flip.changed else None)
