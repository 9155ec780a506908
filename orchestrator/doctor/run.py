"""What `bluegreen doctor` runs (`diagnose`), and the part of it a rollout's precheck runs
for its service before any host is touched (`service_readiness`)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor

from orchestrator.config.loaded import LoadedConfig
from orchestrator.doctor.health import health_checks
from orchestrator.doctor.hosts import host_checks
from orchestrator.doctor.local import store_check, witness_checks
from orchestrator.doctor.metrics import metric_source_checks
from orchestrator.doctor.report import Check, Report
from orchestrator.doctor.routing import router_checks
from orchestrator.errors import RouterError
from orchestrator.inventory import Fleet, Host
from orchestrator.routers.base import Router


def _hosts(fleet: Fleet, services: Sequence[str]) -> list[Host]:
    seen: dict[str, Host] = {}
    for service in services:
        hosts = fleet.service(service)
        for host in (*hosts.blue, *hosts.green):
            seen.setdefault(host.name, host)
    return list(seen.values())


def _with_router(config: LoadedConfig, open_router: Callable[[LoadedConfig], Router],
                 services: Sequence[str]) -> list[Check]:
    try:
        router = open_router(config)
    except RouterError as exc:
        return [Check("router", False, exc.message, exc.hint or "fix `router:` in bluegreen.yml"),
                *metric_source_checks(config, None, services)]
    try:
        return router_checks(config, router, services) + \
            metric_source_checks(config, router, services)
    finally:
        router.close()


def diagnose(config: LoadedConfig, services: Sequence[str] | None = None, *,
             fleet: Fleet | None = None,
             open_router: Callable[[LoadedConfig], Router] | None = None) -> Report:
    """Every check for `services` (default: all of the config's): the store and witnesses
    once, then the hosts, routing and health of each site with reach of its own through
    that site's inventory, ssh and router (`LoadedConfig.views`). Raises BadInput for an
    unknown service or an inventory that cannot be read (bad input, not a check)."""
    names = list(services) if services else sorted(config.services)
    for name in names:
        config.service(name)
    checks = [store_check(config), *witness_checks(config)]
    for view in config.views():
        mine = [n for n in names if n in view.services]
        if mine:
            checks += _reach_checks(view, mine, fleet, open_router)
    return Report(checks)


def _reach_checks(config: LoadedConfig, names: list[str], fleet: Fleet | None,
                  open_router: Callable[[LoadedConfig], Router] | None) -> list[Check]:
    from orchestrator.inventory import load_fleet
    from orchestrator.traffic import open_router as real_router

    fleet = fleet or load_fleet(config)
    hosts = _hosts(fleet, names)
    with ThreadPoolExecutor(max_workers=3) as pool:  # the hosts take the longest
        on_hosts = pool.submit(host_checks, config, hosts)
        routing = pool.submit(_with_router, config, open_router or real_router, names)
        health = pool.submit(health_checks, config, fleet, names)
        return routing.result() + on_hosts.result() + health.result()


def service_readiness(config: LoadedConfig, router: Router, service: str,
                      fleet: Fleet | None) -> list[Check]:
    """The precheck's part of `diagnose` for one service: its hosts (both sides: SSH as the
    probes and Ansible connect, sudo, root) and its router checks (the standby's backend
    must exist; its servers need not be UP yet). `fleet` None: no hosts (fakes)."""
    hosts = _hosts(fleet, [service]) if fleet is not None else []
    with ThreadPoolExecutor(max_workers=1) as pool:
        on_hosts = pool.submit(host_checks, config, hosts)
        checks = router_checks(config, router, [service], standby_up=False)
        return checks + on_hosts.result()
