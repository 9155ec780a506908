"""CVE exposure of a fleet: what each host has installed (one `dpkg-query` per host over
the probe run's strict connections), joined with the advisories (`orchestrator.advisories`).

`fleet_exposure()` reads every host first, then loads the feeds for exactly the source
packages installed (the changelog source downloads only what is newer than the oldest
installed version), then joins per host. A host that cannot be read is reported with its
reason, never as clean.
"""

from __future__ import annotations

from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from orchestrator.advisories import versions
from orchestrator.advisories.base import URGENCIES
from orchestrator.advisories.catalog import load_catalog
from orchestrator.advisories.exposure import (
    INSTALLED_QUERY,
    Catalog,
    HostExposure,
    Installed,
    parse_installed,
    summarize,
)
from orchestrator.advisories.measured import SideMeasurement
from orchestrator.config.loaded import LoadedConfig
from orchestrator.probes.base import ProbeTarget
from orchestrator.probes.connection import CommandTimeout, ProbeConnectionError
from orchestrator.probes.pool import ConnectionPool, shared
from orchestrator.sides import SIDES, Side

READ_TIMEOUT_S = 60.0


def read_installed(
    targets: Sequence[ProbeTarget], *, deadline_s: float = READ_TIMEOUT_S,
    pool: ConnectionPool | None = None, notes: list[str] | None = None,
) -> dict[str, list[Installed] | str]:
    """Per host: its installed packages, or why they could not be read. A package whose
    version cannot be compared is left out, with a note in `notes` naming the host."""
    found: dict[str, list[Installed] | str] = {}

    def one(target: ProbeTarget, connections: ConnectionPool) -> None:
        try:
            conn = connections.get(target, timeout=deadline_s)
            rc, out, err = conn.run(INSTALLED_QUERY, deadline_s)
        except (ProbeConnectionError, CommandTimeout) as exc:
            found[target.name] = exc.message
            return
        except Exception as exc:  # noqa: BLE001 - an unreadable host is reported, not clean
            found[target.name] = f"{type(exc).__name__}: {exc}"
            return
        skipped: list[str] = []
        packages = parse_installed(out, skipped)
        if notes is not None:
            notes.extend(f"{target.name}: {n}" for n in skipped[:20])
        if rc != 0 or not packages:
            found[target.name] = f"dpkg-query failed (rc {rc}): {err.strip()[:200] or 'no output'}"
        else:
            found[target.name] = packages

    if not targets:
        return found
    with shared(pool) as connections, ThreadPoolExecutor(max_workers=min(16, len(targets))) as ex:
        list(ex.map(lambda t: one(t, connections), targets))
    return found


def oldest_sources(read: dict[str, list[Installed] | str]) -> dict[str, str]:
    """source package -> the oldest version installed on any host read."""
    oldest: dict[str, str] = {}
    for packages in read.values():
        if isinstance(packages, str):
            continue
        for p in packages:
            seen = oldest.get(p.source)
            if seen is None or versions.older(p.source_version, seen):
                oldest[p.source] = p.source_version
    return oldest


@dataclass
class SideExposure:
    service: str
    side: Side
    hosts: list[HostExposure] = field(default_factory=list)

    def summary(self, threshold: str) -> dict[str, Any]:
        return summarize(self.hosts, threshold)


@dataclass
class FleetExposure:
    """Exposure per service and side, and the catalog it was judged against."""

    threshold: str
    catalog: Catalog
    sides: list[SideExposure] = field(default_factory=list)
    installed: dict[str, list[Installed] | str] = field(default_factory=dict)

    @property
    def exposed(self) -> bool:
        return any(h.at_or_above(self.threshold) for s in self.sides for h in s.hosts)

    @property
    def unread(self) -> list[str]:
        return [h.host for s in self.sides for h in s.hosts if h.error]

    def measurements(self, at: datetime) -> list[SideMeasurement]:
        """What the views keep of this result (`advisories.measured`): per side, the
        distinct open CVEs of every urgency, whatever the threshold shown."""
        out = []
        for s in self.sides:
            sm = s.summary(URGENCIES[0])
            out.append(SideMeasurement(
                service=s.service, side=s.side, measured_at=at, hosts=sm["hosts"],
                hosts_exposed=sm["hosts_exposed"], hosts_unread=sm["hosts_unread"],
                by_urgency=dict(sm["by_urgency"]), fix_available=sm["fix_available"],
                feeds=list(self.catalog.feeds)))
        return out

    def as_dict(self, live: dict[str, str | None] | None = None) -> dict[str, Any]:
        services: dict[str, Any] = {}
        for s in self.sides:
            entry = services.setdefault(
                s.service, {"live": (live or {}).get(s.service), "sides": {}}
            )
            entry["sides"][s.side] = {
                "summary": s.summary(self.threshold),
                "hosts": [h.as_dict(self.threshold) for h in s.hosts],
            }
        return {
            "threshold": self.threshold,
            "exposed": self.exposed,
            "unread": self.unread,
            "feeds": self.catalog.feeds,
            "notes": self.catalog.notes,
            "services": services,
        }


def fleet_exposure(
    config: LoadedConfig,
    services: Sequence[str],
    sides: Sequence[Side] = SIDES,
    *,
    threshold: str | None = None,
    feed_args: Sequence[str] = (),
    offline: bool | None = None,
) -> FleetExposure:
    """Read every host of `services` x `sides` (each through its site's inventory and ssh:
    `LoadedConfig.for_service`), load the feeds, join."""
    from orchestrator.inventory import Fleet, load_fleet
    from orchestrator.probes.gate import targets_for

    fleets: dict[str | None, Fleet] = {}

    def fleet_of(view: LoadedConfig) -> Fleet:
        if view.site not in fleets:
            fleets[view.site] = load_fleet(view)
        return fleets[view.site]

    groups = [
        (svc, side, targets_for(view, fleet_of(view).service(svc).side(side)))
        for svc in services
        for view in (config.for_service(svc),)
        for side in sides
    ]
    with ConnectionPool() as pool:
        host_notes: list[str] = []
        read = read_installed([t for _, _, ts in groups for t in ts], pool=pool,
                              notes=host_notes)
    catalog = load_catalog(
        config.model.advisories,
        config.advisories_cache_path,
        feed_args=feed_args,
        offline=offline,
        sources=oldest_sources(read),
    )
    catalog.notes += sorted(host_notes)
    result = FleetExposure(threshold or config.model.advisories.min_urgency, catalog,
                           installed=read)
    for svc, side, targets in groups:
        hosts = []
        for t in targets:
            got = read.get(t.name, "not read")
            hosts.append(
                HostExposure(t.name, error=got) if isinstance(got, str)
                else catalog.open_on(t.name, got)
            )
        result.sides.append(SideExposure(svc, side, hosts))
    return result
