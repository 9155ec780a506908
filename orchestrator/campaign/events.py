"""What a campaign run tells its caller, and the names other commands read: the progress
events (`CampaignEvent`), the result (`CampaignResult`), the campaign's lock name and the
"awaiting approval" status."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from orchestrator.campaign.state import ServiceProgress
from orchestrator.errors import BluegreenError

AWAITING = "awaiting_approval"


@dataclass(frozen=True)
class CampaignEvent:
    """Progress for the CLI. kind: wave | service | step | progress | info."""

    kind: str
    message: str
    data: dict[str, Any] = field(default_factory=dict)


@dataclass
class CampaignResult:
    run_id: str
    name: str
    status: str  # done | failed | deferred | awaiting_approval | converge_pending | aborted
    message: str
    exit_code: int
    services: dict[str, ServiceProgress] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {
            "run_id": self.run_id,
            "campaign": self.name,
            "status": self.status,
            "message": self.message,
            "exit_code": self.exit_code,
            "services": {name: state.as_dict() for name, state in self.services.items()},
        }


class Aborted(BluegreenError):
    """The run was aborted (`campaign abort`) while this process drove it."""


def campaign_lock(name: str) -> str:
    return f"campaign:{name}"  # also read by campaign.runs.running_elsewhere


def now_utc() -> datetime:
    return datetime.now(UTC)


def now_text() -> str:
    return now_utc().isoformat()


def emit(on_event: Callable[[CampaignEvent], None], kind: str, message: str,
         data: dict[str, Any] | None = None) -> None:
    """One event to the caller's callback."""
    from orchestrator.inventory import OUTPUT_LOCK

    # workers of a parallel wave report through the same callback, and must not write
    # while another worker's inventory parse has swapped sys.stdout for a buffer
    with OUTPUT_LOCK:
        on_event(CampaignEvent(kind, message, data or {}))


def window_note(state: Any) -> str:
    """"open now (closes ...)" / "closed; next opening ..." for a WindowState."""
    if state.open:
        closes = f" (closes {state.closes_at.isoformat()})" if state.closes_at else ""
        return f"open now{closes}"
    if state.next_open is None:
        return f"{state.reason}; no opening in the next weeks"
    return f"{state.reason}; next opening {state.next_open.isoformat()}"
