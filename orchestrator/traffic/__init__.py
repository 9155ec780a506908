"""Traffic: the safety kernel (`kernel.move_traffic`, the one path that moves traffic),
its gate (`gate`), failpoints, and what `status` shows (`status`).

Import-light on purpose (standard library, errors, sides, routers.base, state): this is
the incident path of `bluegreen rollback`, and a test checks what it imports.
"""

from orchestrator.traffic.commands import operator_move
from orchestrator.traffic.connect import (
    TrafficConfig,
    default_actor,
    open_router,
    open_store,
    parse_side,
    side_or_default,
    store_and_router,
)
from orchestrator.traffic.exposure import ExposeRequest, ExposeResult, expose_traffic
from orchestrator.traffic.kernel import FlipOutcome, FlipRequest, move_traffic, settle
from orchestrator.traffic.status import (
    FleetStatus,
    ServiceStatus,
    adopt,
    check_agreement,
    fleet_status,
    service_status,
)

__all__ = [
    "ExposeRequest",
    "ExposeResult",
    "FlipOutcome",
    "FleetStatus",
    "FlipRequest",
    "ServiceStatus",
    "TrafficConfig",
    "adopt",
    "check_agreement",
    "default_actor",
    "expose_traffic",
    "fleet_status",
    "move_traffic",
    "open_router",
    "operator_move",
    "open_store",
    "parse_side",
    "service_status",
    "settle",
    "side_or_default",
    "store_and_router",
]
