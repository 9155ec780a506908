"""CVE ids and urgencies from the changelogs of the candidate packages in apt repositories.

For each source package of interest, the newest binary package of that source in the
configured repositories is downloaded (verified against the index's SHA256, cached by it)
and its `/usr/share/doc/PKG/changelog.Debian.gz` (or `changelog.gz` for native packages) is
read: each entry names a version, its urgency and, in its text, the CVEs it fixes, e.g.

    openssl (3.0.22-1~deb12u2) bookworm-security; urgency=high
      * CVE-2026-84782 ("DTLS Retransmits Handshake Messages From a Stale Buffer ...")

A CVE is taken as fixed in the NEWEST entry that names it (an older entry may say
"vulnerable to CVE-X, fixed in Y", or a later one complete an incomplete fix); its
urgency is that entry's. This is what the lab uses: no network beyond its own repository.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import tempfile
from collections.abc import Collection, Mapping
from pathlib import Path
from typing import Any

from orchestrator.advisories import versions
from orchestrator.advisories.base import FeedData, Vulnerability, bad_feed, normalize_urgency
from orchestrator.advisories.debchangelog import changelog_bytes
from orchestrator.advisories.fetch import DEFAULT_MAX_BYTES, FetchPolicy, fetch
from orchestrator.advisories.repository import RepoPackage, RepositoryIndex

_CVE_IN_TEXT = re.compile(r"\bCVE-\d{4}-\d{4,7}\b")
FORMAT = 1


class ChangelogSource:
    """Vulnerabilities named by the changelogs of the repositories' newest packages."""

    def __init__(self, index: RepositoryIndex, policy: FetchPolicy) -> None:
        self.index = index
        self.policy = policy
        self.name = "changelog " + "; ".join(index.repos)

    def load(self, sources: Collection[str] | None = None) -> FeedData:
        """`sources` may map each source package to the oldest version installed: sources
        whose repository version is not newer are skipped (nothing to learn there)."""
        data = FeedData(self.name, notes=list(self.index.notes))
        names = sorted({p.source for p in self.index.packages} if sources is None else sources)
        for source in names:
            candidates = self.index.of_source(source)
            if not candidates:
                continue
            newest = versions.newest([p.source_version for p in candidates])
            if isinstance(sources, Mapping):
                installed = sources[source]
                if installed and not versions.older(installed, newest):
                    continue
            entries = self._entries(source, [p for p in candidates if p.source_version == newest])
            if entries is None:
                data.notes.append(f"{source} {newest}: no changelog in its packages")
                continue
            data.vulnerabilities += vulnerabilities_from(source, entries, newest)
        return data

    def _entries(self, source: str, packages: list[RepoPackage]) -> list[dict[str, Any]] | None:
        # the binary named like the source first, then the smallest downloads
        for pkg in sorted(packages, key=lambda p: (p.name != source, p.size, p.name)):
            cached = self.policy.cache_dir / f"changelog-{FORMAT}-{pkg.sha256[:32]}.json"
            try:
                doc = json.loads(cached.read_text())
            except (OSError, ValueError):
                doc = None
            if not isinstance(doc, dict):
                doc = {"entries": self._read_deb(pkg)}
                _write(cached, doc)
            if doc["entries"] is not None:
                return list(doc["entries"])
        return None

    def _read_deb(self, pkg: RepoPackage) -> list[dict[str, Any]] | None:
        got = fetch(pkg.url, self.policy)
        try:
            digest = hashlib.sha256(got.path.read_bytes()).hexdigest()
            if digest != pkg.sha256:
                raise bad_feed(got.origin, "SHA256 differs from the repository's index")
            return read_changelog(got.path, pkg.name, got.origin, self.policy.max_bytes)
        finally:
            if got.path.parent == self.policy.cache_dir:
                got.path.unlink(missing_ok=True)  # kept: the parsed entries, not the .deb


def read_changelog(
    deb: Path, package: str, origin: str, max_bytes: int = DEFAULT_MAX_BYTES
) -> list[dict[str, Any]] | None:
    """[{version, urgency, cves}] of a .deb's changelog, newest first (None: it has none).

    Read with bounded memory (`debchangelog`): a changelog that decompresses past a few MB,
    or a data.tar past `max_bytes`, is one BadInput naming the .deb."""
    from debian.changelog import Changelog, ChangelogParseError

    raw = changelog_bytes(deb, package, origin, max_bytes=max_bytes)
    if raw is None:
        return None
    try:
        changelog = Changelog(raw)
    except (ChangelogParseError, ValueError) as exc:
        raise bad_feed(origin, f"its changelog does not parse ({str(exc)[:200]})") from None
    entries: list[dict[str, Any]] = []
    for block in changelog:
        version = str(block.version)
        if not versions.is_valid(version):
            raise bad_feed(origin, f"changelog entry version {version[:60]!r} is not valid")
        text = "\n".join(block.changes())
        entries.append(
            {
                "version": version,
                "urgency": normalize_urgency(block.urgency),
                "cves": sorted(set(_CVE_IN_TEXT.findall(text))),
            }
        )
    return entries


def vulnerabilities_from(
    source: str, entries: list[dict[str, Any]], available: str
) -> list[Vulnerability]:
    """One Vulnerability per CVE named by the entries: fixed in the newest entry naming it."""
    fixed: dict[str, tuple[str, str]] = {}
    for entry in entries:
        for cve in entry["cves"]:
            seen = fixed.get(cve)
            if seen is None or versions.compare(entry["version"], seen[0]) > 0:
                fixed[cve] = (entry["version"], entry["urgency"])
    return [
        Vulnerability(
            cve=cve,
            source=source,
            fixed_version=version,
            urgency=urgency,
            feed="changelog",
            available_version=available,
        )
        for cve, (version, urgency) in sorted(fixed.items())
    ]


def _write(path: Path, doc: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".changelog-")
    with os.fdopen(fd, "w") as out:
        json.dump(doc, out)
    Path(tmp).replace(path)
