"""Which CVEs are open on a host: what it has installed, joined with the advisories.

Hosts install binary packages; advisories name source packages. dpkg says which source
(and source version) each installed binary comes from:

    dpkg-query -W -f '${db:Status-Abbrev}\\t${Package}\\t${Version}\\t${source:Package}\\t${source:Version}\\n'

A CVE is open on a host when an installed source version lies in an affected window of it
(introduced <= installed < fixed, or no fix yet), by Debian's version rules (debsecan's rule
for the tracker's data). Feeds that disagree: the host is exposed if any feed says so, with
the highest fixed version and urgency among them (the safe side).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from orchestrator.advisories import versions
from orchestrator.advisories.base import Vulnerability, at_or_above, max_urgency, urgency_rank

INSTALLED_QUERY = (
    "dpkg-query -W -f "
    "'${db:Status-Abbrev}\\t${Package}\\t${Version}\\t${source:Package}\\t${source:Version}\\n'"
)


@dataclass(frozen=True)
class Installed:
    """One installed binary package and the source package it was built from."""

    name: str
    version: str
    source: str
    source_version: str


def parse_installed(text: str, notes: list[str] | None = None) -> list[Installed]:
    """Lines of INSTALLED_QUERY; packages whose files are on disk (not `rc`, not `n`).

    A package whose version python-debian cannot compare is skipped ("not read", added to
    `notes` when given): the host said something no version rule can judge."""
    found: dict[str, Installed] = {}
    for line in text.splitlines():
        fields = line.split("\t")
        if len(fields) != 5:
            continue
        status, name, version, source, source_version = (f.strip() for f in fields)
        if len(status) < 2 or status[1] in "nc":
            continue
        if not versions.readable(version):
            if notes is not None:
                notes.append(versions.not_read(f"package {name[:60]!r}", version))
            continue
        source = source or name
        source_version = source_version if versions.readable(source_version) else version
        found[name] = Installed(name, version, source, source_version)
    return sorted(found.values(), key=lambda p: p.name)


def affects(vuln: Vulnerability, installed: str) -> bool:
    if vuln.introduced != "0" and versions.older(installed, vuln.introduced):
        return False
    if vuln.fixed_version is not None and not versions.older(installed, vuln.fixed_version):
        return False
    if vuln.last_affected is not None and versions.compare(installed, vuln.last_affected) > 0:
        return False
    return True


@dataclass
class OpenCve:
    """A CVE open on a host: the packages that carry it, and how to close it."""

    cve: str
    source: str
    packages: list[str]
    installed: str
    fixed_version: str | None
    urgency: str
    fix_available: bool | None
    """True: the configured repositories offer a fixed version; False: they do not (or no
    fix exists); None: no repository is configured to tell."""
    available_version: str | None
    feeds: list[str]
    description: str = ""

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class HostExposure:
    host: str
    open: list[OpenCve] = field(default_factory=list)
    packages: int = 0
    error: str | None = None

    def at_or_above(self, threshold: str) -> list[OpenCve]:
        return [c for c in self.open if at_or_above(c.urgency, threshold)]

    def as_dict(self, threshold: str = "unimportant") -> dict[str, Any]:
        return {
            "host": self.host,
            "packages": self.packages,
            "error": self.error,
            "open": [c.as_dict() for c in self.at_or_above(threshold)],
        }


class Catalog:
    """Vulnerabilities of every feed, by source package, and what the repositories offer."""

    def __init__(
        self,
        vulnerabilities: Iterable[Vulnerability],
        feeds: Sequence[str] = (),
        notes: Sequence[str] = (),
        available: Mapping[str, str] | None = None,
        binaries: Mapping[str, str] | None = None,
        sources_of: Mapping[str, Iterable[str]] | None = None,
    ) -> None:
        self.by_source: dict[str, list[Vulnerability]] = {}
        for v in vulnerabilities:
            self.by_source.setdefault(v.source, []).append(v)
        self.feeds = list(feeds)
        self.notes = list(notes)
        self.available = dict(available) if available is not None else None
        """source package -> newest source version the configured repositories offer
        (None: no repository configured)."""
        self.binaries = dict(binaries or {})
        """binary package -> newest version the configured repositories offer."""
        self.sources_of = (
            None if sources_of is None else {b: frozenset(s) for b, s in sources_of.items()}
        )
        """binary package -> the source packages it is built from, by the repositories' own
        `Packages` index (`Source:`); None: no repository configured. What a host says a
        binary is built from is the host's word; this is the repository's."""

    def __len__(self) -> int:
        return sum(len(v) for v in self.by_source.values())

    def open_on(self, host: str, installed: Sequence[Installed]) -> HostExposure:
        binaries: dict[tuple[str, str], list[str]] = {}
        for pkg in installed:
            binaries.setdefault((pkg.source, pkg.source_version), []).append(pkg.name)
        found: list[OpenCve] = []
        for (source, version), names in sorted(binaries.items()):
            by_cve: dict[str, list[Vulnerability]] = {}
            for vuln in self.by_source.get(source, []):
                if affects(vuln, version):
                    by_cve.setdefault(vuln.cve, []).append(vuln)
            found += [self._open(cve, source, version, names, vs) for cve, vs in by_cve.items()]
        found.sort(key=lambda c: (-urgency_rank(c.urgency), c.source, c.cve))
        return HostExposure(host, found, len(installed))

    def _open(
        self, cve: str, source: str, version: str, names: list[str], vulns: list[Vulnerability]
    ) -> OpenCve:
        fixes = [v.fixed_version for v in vulns]
        fixed = None if None in fixes else versions.newest([f for f in fixes if f is not None])
        offered = [v.available_version for v in vulns if v.available_version]
        if self.available is not None and source in self.available:
            offered.append(self.available[source])
        available = versions.newest(offered) if offered else None
        if fixed is None:
            fix_available: bool | None = False
        elif available is not None:
            fix_available = not versions.older(available, fixed)
        else:
            fix_available = False if self.available is not None else None
        return OpenCve(
            cve=cve,
            source=source,
            packages=sorted(names),
            installed=version,
            fixed_version=fixed,
            urgency=max_urgency(v.urgency for v in vulns),
            fix_available=fix_available,
            available_version=available if fix_available else None,
            feeds=sorted({v.feed for v in vulns}),
            description=next((v.description for v in vulns if v.description), ""),
        )


def summarize(hosts: Sequence[HostExposure], threshold: str) -> dict[str, Any]:
    """Per side: hosts, exposed hosts, distinct open CVEs (at/above threshold) by urgency."""
    cves: dict[str, str] = {}
    exposed = 0
    fixable: set[str] = set()
    for h in hosts:
        mine = h.at_or_above(threshold)
        exposed += bool(mine)
        for c in mine:
            cves[c.cve] = max_urgency([cves.get(c.cve, c.urgency), c.urgency])
            if c.fix_available:
                fixable.add(c.cve)
    by_urgency: dict[str, int] = {}
    for u in cves.values():
        by_urgency[u] = by_urgency.get(u, 0) + 1
    return {
        "hosts": len(hosts),
        "hosts_exposed": exposed,
        "hosts_unread": sum(1 for h in hosts if h.error),
        "cves": len(cves),
        "fix_available": len(fixable),
        "by_urgency": dict(sorted(by_urgency.items(), key=lambda kv: -urgency_rank(kv[0]))),
    }
