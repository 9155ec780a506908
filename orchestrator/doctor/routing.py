"""The router, checked as a rollout will use it: its own setup (`routers.base.SelfChecking`,
e.g. HAProxy's socket level, map and server-state file), then per service the live side,
both sides' backends with a server UP, and a request through the service's frontend that
carries the confirm header naming the live backend (without it a flip moves traffic and
then fails to confirm)."""

from __future__ import annotations

from collections.abc import Sequence

from orchestrator.config.loaded import LoadedConfig
from orchestrator.doctor.report import Check
from orchestrator.errors import RouterError
from orchestrator.routers.base import Router
from orchestrator.routers.confirm import backend_header
from orchestrator.sides import SIDES, Side

_REQUEST_TIMEOUT = 3.0


def _own_setup(router: Router, services: Sequence[str]) -> list[Check]:
    readiness = getattr(router, "readiness", None)
    if readiness is None:
        return []
    try:
        return list(readiness(services))
    except RouterError as exc:  # a driver should not raise here; say it, never crash
        return [Check("router", False, exc.message, exc.hint or "check the router settings")]


def _backend(config: LoadedConfig, router: Router, service: str, side: Side, *,
             need_up: bool) -> Check:
    backend = config.router.backend_name(service, side) or side
    name = f"backend {service} {side}"
    try:
        health = router.health(service, side)
    except RouterError as exc:
        return Check(name, False, exc.message,
                     exc.hint or "name the backends in the load balancer as the router's "
                     "backend_template says (default {service}_{side}), or change it")
    states = ", ".join(f"{s.name} {s.status}" for s in health.servers) or "no servers"
    if health.healthy or not need_up:
        return Check(name, True, f"{health.backend}: {states}")
    return Check(name, False, f"{health.backend} has no server UP ({states}): a flip to it is "
                 "refused", f"make the hosts of {backend} healthy (the load balancer's health "
                 "check), then run again")


def _confirm(config: LoadedConfig, service: str, live: Side) -> Check:
    settings = config.router
    name = f"confirm header {service}"
    url, header = settings.frontends.get(service), settings.confirm_header
    wanted = settings.backend_name(service, live)
    if header is None or wanted is None:
        return Check(name, None, "this router confirms flips its own way (no confirm header)")
    if not url:
        return Check(name, None, f"no router.frontends.{service}: a flip is confirmed by the "
                     "map's read-back only and bake sees no requests",
                     f"set router.frontends.{service} to the URL of its frontend")
    try:
        status, got = backend_header(url, header, _REQUEST_TIMEOUT)
    except (OSError, ValueError) as exc:
        return Check(name, False, f"a request to {url} failed: {exc}",
                     f"router.frontends.{service} must be the URL of {service}'s frontend, "
                     "reachable from here")
    if got is None:
        return Check(name, False, f"a request through {url} (HTTP {status}) has no {header} "
                     "header: a flip would move traffic, then fail to confirm it",
                     f"add `http-response set-header {header} %b` to {service}'s frontend in "
                     "the load balancer's config (required), then reload it")
    if got != wanted:
        return Check(name, False, f"a request through {url} was served by {got}, but the live "
                     f"backend is {wanted}", f"point router.frontends.{service} at {service}'s "
                     f"own frontend (the one routing with the map), or fix its {header} header")
    return Check(name, True, f"{url}: HTTP {status}, {header}: {got} (the live backend)")


def router_checks(config: LoadedConfig, router: Router, services: Sequence[str], *,
                  standby_up: bool = True) -> list[Check]:
    """The module docstring's checks. `standby_up=False` (the precheck): the standby's
    backend must exist but need not have a server UP (the patch may be what heals it;
    the flip checks it again)."""
    checks = _own_setup(router, services)
    if any(c.failed and c.name == "router socket" for c in checks):
        return checks  # the load balancer cannot be asked anything else
    for service in services:
        live: Side | None = None
        try:
            live = router.live(service)
        except RouterError as exc:
            checks.append(Check(f"live {service}", False, exc.message,
                                exc.hint or "give the service a routing entry"))
        else:
            checks.append(Check(f"live {service}", True,
                                f"{live} ({config.router.backend_name(service, live) or live})"))
        for side in SIDES:
            need_up = standby_up or side == live
            checks.append(_backend(config, router, service, side, need_up=need_up))
        if live is not None:
            checks.append(_confirm(config, service, live))
    return checks
