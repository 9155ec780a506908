"""`bluegreen campaign new`: a reviewable campaign file from what is open on the fleet.

Advisories are the open CVEs (at or above the threshold, on either side of the chosen
services) grouped by source package and fixed version: one advisory per (source, fixed
version), naming the binary packages the hosts have from that source. Every advisory of
one source pins the same versions (what the configured repositories offer, else the
highest fixed version), so the campaign's packages never disagree. CVEs whose fix the
repositories do not offer, or that have no fix yet, are left out and named in the file's
header. One wave per service, in the order given; the file is validated before it is
written, and an existing file is never overwritten.

Which binary packages a source has is the hosts' word (their dpkg databases), and a
campaign's packages are installed on every host of its services: so one host must not widen
it. A binary is pinned only when the repositories' own index says it is built from the
advisory's source, and when at least half of the hosts with that source open report it;
any other name goes into the header as a note (install it by hand where it belongs).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import yaml

from orchestrator.advisories import versions
from orchestrator.advisories.base import max_urgency
from orchestrator.advisories.exposure import OpenCve
from orchestrator.campaign.model import campaign_from_dict
from orchestrator.errors import BadInput
from orchestrator.probes.exposure import FleetExposure
from orchestrator.safe_write import write_file
from orchestrator.text import one_line

_SEVERITY = {"unimportant": "low", "low": "low", "medium": "medium", "high": "high",
             "critical": "critical", "unknown": "medium"}


@dataclass
class NewCampaign:
    path: Path | None
    doc: dict[str, Any] | None
    advisories: int = 0
    cves: int = 0
    packages: int = 0
    notes: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {
            "path": str(self.path) if self.path else None,
            "advisories": self.advisories,
            "cves": self.cves,
            "packages": self.packages,
            "notes": self.notes,
            "campaign": self.doc,
        }


def build_campaign(
    found: FleetExposure, services: Sequence[str], *, name: str | None = None
) -> NewCampaign:
    """The campaign document (None when nothing fixable is open) and what was left out."""
    opened: dict[tuple[str, str], dict[str, OpenCve]] = {}  # (source, fixed) -> cve -> open
    where: dict[tuple[str, str], set[str]] = {}
    binaries: dict[str, dict[str, set[str]]] = {}  # source -> binary -> hosts that say so
    with_source: dict[str, set[str]] = {}  # source -> hosts where it is open
    left_out: dict[str, str] = {}
    for side in found.sides:
        if side.service not in services:
            continue
        for host in side.hosts:
            for c in host.at_or_above(found.threshold):
                if c.fixed_version is None or c.fix_available is False:
                    why = "no fix yet" if c.fixed_version is None else (
                        f"fixed in {c.fixed_version}, not offered by the repositories")
                    left_out[f"{c.cve} ({c.source})"] = why
                    continue
                key = (c.source, c.fixed_version)
                opened.setdefault(key, {})[c.cve] = c
                where.setdefault(key, set()).add(side.service)
                with_source.setdefault(c.source, set()).add(host.host)
                for b in c.packages:
                    binaries.setdefault(c.source, {}).setdefault(b, set()).add(host.host)
    notes = [f"left out {k}: {why}" for k, why in sorted(left_out.items())]
    pins: dict[str, dict[str, str]] = {}
    for source in sorted(binaries):
        fixes = [fixed for (src, fixed) in opened if src == source]
        highest = versions.newest(fixes)
        trusted, doubts = _trusted_binaries(found, source, binaries[source], with_source[source])
        notes += doubts
        if trusted:
            pins[source] = {b: _pin(found, b, highest) for b in trusted}
        else:
            notes.append(f"left out {source}: no binary package of it to pin (see above)")
            opened = {k: v for k, v in opened.items() if k[0] != source}
    if not opened:
        return NewCampaign(None, None, notes=notes)
    advisories = []
    for (source, fixed), cves in sorted(
        opened.items(), key=lambda kv: (kv[0][0], versions.parse(kv[0][1]))
    ):
        ordered = sorted(cves)
        advisories.append(
            {
                "id": f"{source}-{fixed}"[:100],
                "cves": ordered,
                "severity": _SEVERITY[max_urgency(c.urgency for c in cves.values())],
                "packages": pins[source],
                "applies_to": [s for s in services if s in where[(source, fixed)]],
            }
        )
    campaign_name = name or f"security-{datetime.now(UTC):%Y%m%d}"
    doc: dict[str, Any] = {
        "name": campaign_name,
        "description": (
            f"Close {sum(len(c) for c in opened.values())} CVEs open at or above "
            f"{found.threshold} on {', '.join(services)}"
        ),
        "advisories": advisories,
        "waves": [{"name": s, "services": [s], "on_failure": "stop"} for s in services],
        "approval": {"mode": "auto"},
        "window": {"always": True},
    }
    return NewCampaign(
        None,
        doc,
        advisories=len(advisories),
        cves=len({c for cs in opened.values() for c in cs}),
        packages=len({b for p in pins.values() for b in p}),
        notes=notes,
    )


def _trusted_binaries(
    found: FleetExposure, source: str, reported: dict[str, set[str]], hosts: set[str]
) -> tuple[list[str], list[str]]:
    """(binaries to pin, notes on the others): a binary is pinned when the repositories'
    index says it is built from `source` and at least half of the `hosts` with `source` open
    report it; without an index (no repository configured) only the hosts' word is left, so
    it takes a strict majority of them, and at least two unless there is only one host."""
    keep: list[str] = []
    notes: list[str] = []
    index = found.catalog.sources_of
    for name in sorted(reported):
        who = sorted(reported[name])
        said = (f"{len(who)} of {len(hosts)} host(s) with {source} open say it is built from "
                f"{source} ({', '.join(who[:5])}{', ...' if len(who) > 5 else ''})")
        if index is not None and source not in index.get(name, ()):
            theirs = index.get(name)
            repo = (f"the repositories' index says it is built from {', '.join(sorted(theirs))}"
                    if theirs else "the repositories' index does not list it")
            notes.append(f"not pinned: {name}: {said}; {repo}")
        elif len(who) * 2 < len(hosts) or (index is None and not _majority(who, hosts)):
            notes.append(f"not pinned: {name}: only {said}"
                         f"{'' if index is not None else ' (and no repository index to check)'}"
                         "; install it by hand where it belongs")
        else:
            keep.append(name)
    return keep, notes


def _majority(who: Sequence[str], hosts: set[str]) -> bool:
    """More than half of `hosts`, and more than one host unless there is just one."""
    return len(who) * 2 > len(hosts) and (len(who) >= 2 or len(hosts) == 1)


def _pin(found: FleetExposure, binary: str, fixed: str) -> str:
    """The version of `binary` to install: what the repositories offer when it fixes, else
    the fixed (source) version, which is the binary's version unless it was rebuilt."""
    offered = found.catalog.binaries.get(binary)
    if offered and not versions.older(offered, fixed):
        return offered
    return fixed


def write_new_campaign(
    found: FleetExposure, services: Sequence[str], output: Path, *, name: str | None = None
) -> NewCampaign:
    made = build_campaign(found, services, name=name)
    if made.doc is None:
        return made
    if output.exists() or output.is_symlink():
        raise BadInput(
            f"{output} exists: `campaign new` never overwrites a file",
            hint="choose another -o path, or remove the old file first",
        )
    campaign_from_dict(made.doc, str(output))  # a file we write must load: a bug otherwise
    header = [
        f"# Written by `bluegreen campaign new` at {datetime.now(UTC):%Y-%m-%d %H:%M} UTC.",
        f"# Open CVEs at or above {found.threshold} on {', '.join(services)} (either side),",
        "# grouped by source package and fixed version. Review before `campaign run`.",
        *[f"# feed: {one_line(f)}" for f in found.catalog.feeds],
        *[f"# {one_line(n)}" for n in made.notes],  # a host's text cannot end the comment
    ]
    text = "\n".join(header) + "\n" + yaml.safe_dump(made.doc, sort_keys=False, width=100)
    made.path = write_file(output, text, mode=0o644, make_parents=True)
    return made
