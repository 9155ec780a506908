"""The operator's traffic commands, `rollback` and `flip`: open the config's state store
and router, move traffic through the kernel, close. An operator's move aborts the
service's rollout in flight (a rollout that had not flipped leaves traffic where it is)."""

from __future__ import annotations

from orchestrator.traffic.connect import TrafficConfig, open_router, open_store, parse_side
from orchestrator.traffic.kernel import FlipOutcome, FlipRequest, HostRecheck, move_traffic


def operator_move(config: TrafficConfig, service: str, to_side: str | None, reason: str,
                  actor: str, *, command: str, force: bool = False,
                  recheck_hosts: HostRecheck | None = None) -> FlipOutcome:
    """Move SERVICE's traffic to `to_side` (None: the rollback target). The service name
    is checked before the store is opened: bad input changes nothing."""
    config.service(service)
    store, router = open_store(config), open_router(config)
    try:
        return move_traffic(store, router, FlipRequest(
            service=service, command=command, reason=reason, actor=actor,
            to=parse_side(to_side), force=force, abort_in_flight=True,
            recheck_hosts=recheck_hosts,
        ))
    finally:
        router.close()
        store.close()
