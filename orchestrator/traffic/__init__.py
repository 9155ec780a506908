"""Traffic: the safety kernel (`kernel.move_traffic`, the one path that moves traffic),
its gate (`gate`), failpoints, and what `status` shows (`status`).

Import-light on purpose (standard library, errors, sides, routers.base, state): this is
the incident path of `bluegreen rollback`, and a test checks what it imports.
"""

from orchestrator.traffic.connect import (
    TrafficConfig,
    default_actor,
    open_router,
    open_store,
    parse_side,
)
from orchestrator.traffic.kernel import FlipOutcome, FlipRequest, move_traffic, settle
from orchestrator.traffic.status import ServiceStatus, adopt, check_agreement, service_status

__all__ = [
    "FlipOutcome",
    "FlipRequest",
    "ServiceStatus",
    "TrafficConfig",
    "adopt",
    "check_agreement",
    "default_actor",
    "move_traffic",
    "open_router",
    "open_store",
    "parse_side",
    "service_status",
    "settle",
]
