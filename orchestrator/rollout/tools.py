"""What a rollout reaches besides the store and the router: Ansible, the probes, SSH
reachability, the flip's host recheck and the bake's requests. Tests swap them for fakes
(`orchestrator.testing.fake_tools`); the defaults here are the real ones, imported lazily."""

from __future__ import annotations

import time
import urllib.error
import urllib.request
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from orchestrator.config.loaded import LoadedConfig
from orchestrator.config.models import PackageSpec
from orchestrator.inventory import Fleet, Host
from orchestrator.routers.base import Check, Router
from orchestrator.sides import Side
from orchestrator.state.base import StateStore
from orchestrator.traffic.exposure import ExposeRequest
from orchestrator.traffic.kernel import HostRecheck


def _patch_side(config: LoadedConfig, service: str, side: Side,
                packages: list[PackageSpec] | None, *, on_event: Callable[[Any], None],
                cancel: Callable[[], bool], fleet: Fleet | None) -> Any:
    from orchestrator.patching import patch_side

    return patch_side(config, service, side, packages, on_event=on_event, cancel=cancel,
                      fleet=fleet)


def host_recheck(config: LoadedConfig, service: str, fleet: Fleet | None = None) -> HostRecheck:
    """The flip's host recheck: the side's hosts must be the ones that were verified.
    `fleet`: the command's parse of the inventory (None: parsed if the recheck runs)."""

    def recheck(side: Side, recorded: Any) -> None:
        from orchestrator.inventory import load_fleet
        from orchestrator.probes.gate import targets_for
        from orchestrator.probes.identity import recheck as recheck_hosts

        hosts = (fleet or load_fleet(config)).service(service).side(side)
        recheck_hosts(service, side, targets_for(config, hosts), recorded)

    return recheck


def readiness(config: LoadedConfig, router: Router, service: str,
              fleet: Fleet | None) -> list[Check]:
    """The precheck's part of `bluegreen doctor` (`doctor.run.service_readiness`)."""
    from orchestrator.doctor.run import service_readiness

    return service_readiness(config, router, service, fleet)


def probe_once(url: str, header: str | None, backend: str | None) -> tuple[bool, str]:
    """One bake request through the load balancer: (ok, why not)."""
    try:
        with urllib.request.urlopen(url, timeout=2) as resp:
            served_by = resp.headers.get(header) if header else None
            if backend and served_by and served_by != backend:
                return False, f"served by {served_by}, expected {backend}"
            resp.read()
            return True, ""
    except urllib.error.HTTPError as exc:
        return False, f"HTTP {exc.code}"
    except OSError as exc:
        return False, f"{type(exc).__name__}: {exc}"


def expose_through_kernel(store: StateStore, router: Router, change: ExposeRequest) -> None:
    """The traffic kernel's `expose_traffic` (journaled, gated, fenced, audited)."""
    from orchestrator.traffic import expose_traffic

    expose_traffic(store, router, change)


def preview_probe(url: str, header: str | None, backend: str | None) -> tuple[bool, str]:
    """One preview request through the load balancer (`X-Bluegreen-Preview: 1`): (ok,
    why not); ok only when answered below 500 by `backend` (when the router says who)."""
    from orchestrator.routers.base import PREVIEW_HEADER

    request = urllib.request.Request(url, headers={PREVIEW_HEADER: "1"})  # noqa: S310
    try:
        with urllib.request.urlopen(request, timeout=2) as resp:  # noqa: S310
            served_by = resp.headers.get(header) if header else None
            resp.read()
    except urllib.error.HTTPError as exc:
        served_by = exc.headers.get(header) if header else None
        if exc.code >= 500:
            return False, f"HTTP {exc.code} from {served_by or 'the load balancer'}"
    except OSError as exc:
        return False, f"{type(exc).__name__}: {exc}"
    if backend and header and served_by != backend:
        return False, f"served by {served_by or 'an unnamed backend'}, expected {backend}"
    return True, ""


@dataclass
class RolloutTools:
    """The outside world of a rollout (see the module's docstring)."""

    patch: Callable[..., Any] = _patch_side
    """(config, service, side, packages, *, on_event, cancel, fleet) -> a
    `patching.SidePatch`."""
    verify: Callable[..., Any] | None = None
    """(config, store, service, side, *, actor, packages, advisories, patch_level,
    expected_generation, fleet) -> a VerifyOutcome; records the verdict in the store. None: the
    real gate, `steps.verify.verify_side` (the verify step's own module)."""
    unreachable: Callable[[Sequence[Host]], list[str]] = field(
        default_factory=lambda: unreachable_hosts
    )
    """The names of the hosts that do not answer with an SSH banner."""
    readiness: Callable[[LoadedConfig, Router, str, Fleet | None], list[Check]] = readiness
    """(config, router, service, fleet) -> the checks the precheck runs before any host is
    touched (`bluegreen doctor`'s, for the service); a failed one stops the rollout."""
    recheck: Callable[[LoadedConfig, str, Fleet | None], HostRecheck | None] = host_recheck
    probe: Callable[[str, str | None, str | None], tuple[bool, str]] = field(
        default_factory=lambda: probe_once
    )
    expose: Callable[[StateStore, Router, ExposeRequest], None] = field(
        default_factory=lambda: expose_through_kernel
    )
    """Sets the share of new requests the patched side takes (the bake's steps), through
    the traffic kernel; side None: the split is cleared (all on the live side)."""
    preview: Callable[[str, str | None, str | None], tuple[bool, str]] = field(
        default_factory=lambda: preview_probe
    )
    """One request with the preview header through the frontend (the bake's steps)."""
    clock: Callable[[], float] = time.monotonic
    sleep: Callable[[float], None] = time.sleep
    """How the bake's steps wait (fakes advance a clock instead)."""
    check_inputs: bool = True
    """Read the inventory (once: it is passed down) and find the playbook before anything
    is written. False: no inventory at all (the fakes need none)."""


def unreachable_hosts(hosts: Sequence[Host]) -> list[str]:
    """The names of `hosts` that do not answer with an SSH banner (in parallel)."""
    import socket
    from concurrent.futures import ThreadPoolExecutor

    def down(h: Host) -> bool:
        try:
            with socket.create_connection((h.address, h.port), timeout=3) as s:
                s.settimeout(3)
                return not s.recv(8).startswith(b"SSH-")
        except OSError:
            return True

    with ThreadPoolExecutor(max_workers=min(16, max(1, len(hosts)))) as pool:
        flags = list(pool.map(down, hosts))
    return [h.name for h, bad in zip(hosts, flags, strict=True) if bad]
