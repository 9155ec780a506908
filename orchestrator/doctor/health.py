"""The services' health URLs (`services.NAME.health`), each asked of every host of both
sides from here, as the verification gate asks them: the status must be the expected one."""

from __future__ import annotations

import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor

from orchestrator.config.loaded import LoadedConfig
from orchestrator.config.models import HttpCheck
from orchestrator.doctor.report import Check
from orchestrator.inventory import Fleet, Host

_TIMEOUT = 5.0


def _one(host: Host, check: HttpCheck) -> Check:
    url = check.url_for(host.address)
    name = f"health {host.name}"
    started = time.monotonic()
    try:
        with urllib.request.urlopen(url, timeout=_TIMEOUT) as resp:  # noqa: S310
            status = int(resp.status)
    except urllib.error.HTTPError as exc:
        status = int(exc.code)
    except (urllib.error.URLError, OSError) as exc:
        return Check(name, False, f"GET {url} failed: {getattr(exc, 'reason', exc)}",
                     f"start the service on {host.name}, or fix the health URL ({{host}} is "
                     "the host's connect address: ansible_host, else its inventory name)")
    ms = (time.monotonic() - started) * 1000
    if status != check.expect_status:
        return Check(name, False, f"GET {url}: HTTP {status}, expected {check.expect_status}",
                     f"make {host.name} healthy, or fix expect_status")
    return Check(name, True, f"GET {url}: HTTP {status} in {ms:.0f} ms")


def health_checks(config: LoadedConfig, fleet: Fleet, services: Sequence[str]) -> list[Check]:
    work = [(host, check) for service in services
            for host in (*fleet.service(service).blue, *fleet.service(service).green)
            for check in config.service(service).health]
    if not work:
        return []
    with ThreadPoolExecutor(max_workers=min(16, len(work))) as pool:
        return list(pool.map(lambda item: _one(*item), work))
