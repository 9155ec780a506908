"""The metric source of each service baked in steps (`bake.steps`, issue 23): which one the
analysis reads, and whether it answers now. A source that cannot be read makes every step
inconclusive, which never promotes: the rollout would patch, verify, then hold and end by
`on_inconclusive`. So doctor fails such a service before a rollout finds out.

- a Prometheus (`bake.analysis.source: URL`): one instant query, `vector(1)`, over
  `/api/v1/query`, must come back as the value 1;
- the load balancer's counters (`source: counters`, the default): both sides' counters must
  be readable (HAProxy `show stat`: responses, 5xx and the average response time; a load
  balancer that keeps no times is judged on the error ratio alone, and doctor says so)."""

from __future__ import annotations

from collections.abc import Sequence

from orchestrator.analysis.prometheus import PrometheusSource
from orchestrator.config.loaded import LoadedConfig
from orchestrator.doctor.report import Check
from orchestrator.errors import RouterError
from orchestrator.routers.base import Router
from orchestrator.sides import SIDES

PROBE_QUERY = "vector(1)"
_TIMEOUT = 3.0


def metric_source_checks(config: LoadedConfig, router: Router | None,
                         services: Sequence[str]) -> list[Check]:
    """One check per service with `bake.steps` (none for the others: their bake watches
    bluegreen's own requests and the counters as before). `router` None: it could not be
    opened (that failure is reported on its own), so the counters are unknown."""
    checks = []
    for service in services:
        bake = config.service(service).bake
        if not bake.exposure_steps:
            continue
        url = bake.analysis.prometheus
        name = f"metric source {service}"
        if url is not None:
            checks.append(_prometheus(name, service, url))
        else:
            checks.append(_counters(name, config, router, service))
    return checks


def _prometheus(name: str, service: str, url: str) -> Check:
    sample = PrometheusSource(url, timeout=_TIMEOUT).query(PROBE_QUERY)
    if sample.value == 1.0:
        return Check(name, True, f"Prometheus {url}: answers /api/v1/query ({PROBE_QUERY} = 1)")
    problem = sample.problem or f"answered {sample.value!r} to {PROBE_QUERY}"
    return Check(name, False, f"Prometheus {url} (bake.analysis.source): {problem}: every "
                 "bake step would be inconclusive and never promote",
                 f"start it or point services.{service}.bake.analysis.source at a "
                 "Prometheus that answers /api/v1/query from here (or `counters`: the load "
                 "balancer's own)")


def _counters(name: str, config: LoadedConfig, router: Router | None, service: str) -> Check:
    what = "the load balancer's counters (bake.analysis.source: counters)"
    if router is None:
        return Check(name, None, f"{what}: not read (the router could not be opened)",
                     "fix the router first")
    unread, timed = [], True
    for side in SIDES:
        backend = config.router.backend_name(service, side) or side
        try:
            counted = router.counters(service, side)
        except RouterError as exc:
            unread.append(f"{backend}: {exc.message}")
            continue
        if counted is None:
            unread.append(f"{backend}: the load balancer does not count it")
        elif counted.response_ms is None:
            timed = False
    if unread:
        return Check(name, False, f"{what} cannot be read ({'; '.join(unread)}): every bake "
                     "step would be inconclusive and never promote",
                     f"use a router that counts responses per backend (HAProxy), or point "
                     f"services.{service}.bake.analysis.source at a Prometheus")
    if timed:
        return Check(name, True, f"{what}: both sides' responses, 5xx and response times "
                     "readable: error ratio and latency judged")
    return Check(name, True, f"{what}: both sides' responses and 5xx readable; this load "
                 "balancer keeps no response times: error ratio judged, latency not")
