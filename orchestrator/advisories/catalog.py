"""Load the configured feeds (or the ones given on the command line) into one Catalog.

`--feed` takes `[KIND:]LOCATION`, KIND one of debian-tracker, osv, changelog. Without a
KIND: a `.zip` or a directory of `*.json` is OSV; a URL or directory ending in `/`, or an
apt line (`URL SUITE COMPONENT...`), is a repository read by the changelog source; a JSON
file is OSV when it looks like an OSV record or list, else the tracker's JSON.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from datetime import timedelta
from pathlib import Path

from orchestrator.advisories.base import AdvisorySource, FeedData
from orchestrator.advisories.decompress import compression_of
from orchestrator.advisories.exposure import Catalog
from orchestrator.advisories.fetch import FetchPolicy, fetch, is_url
from orchestrator.advisories.repository import RepositoryIndex, load_index
from orchestrator.advisories.settings import AdvisorySettings
from orchestrator.errors import BadInput

KINDS = ("debian-tracker", "osv", "changelog")
_KIND_PREFIX = re.compile(r"^(debian-tracker|tracker|osv|changelog):(?!//)")


def policy_for(settings: AdvisorySettings, cache_dir: Path, offline: bool | None) -> FetchPolicy:
    return FetchPolicy(
        cache_dir=cache_dir,
        offline=settings.offline if offline is None else offline,
        max_bytes=settings.max_mb * 1024 * 1024,
        max_age=timedelta(days=settings.max_age_days),
    )


def parse_feed_arg(arg: str, policy: FetchPolicy) -> tuple[str, str]:
    """`[KIND:]LOCATION` -> (kind, location); the kind guessed when not given."""
    m = _KIND_PREFIX.match(arg)
    if m:
        kind = "debian-tracker" if m.group(1) == "tracker" else m.group(1)
        return kind, arg[m.end() :]
    if not arg.strip():
        raise BadInput("--feed: empty", hint="give a file, directory or URL")
    if len(arg.split()) > 1 or arg.endswith("/"):
        return "changelog", arg
    if arg.endswith(".zip"):
        return "osv", arg
    local = Path(arg.removeprefix("file://")).expanduser()
    if not is_url(arg) and local.is_dir():
        if any(local.glob("Packages*")):
            return "changelog", arg
        return "osv", arg
    head = _head(fetch(arg, policy).path)
    if head.startswith("[") or re.search(r'"(schema_version|affected|modified)"\s*:', head):
        return "osv", arg
    return "debian-tracker", arg


def _head(path: Path) -> str:
    with open(path, "rb") as f:
        raw = f.read(65536)
    if compression_of(raw) is not None:
        return ""  # compressed: the tracker's JSON is what is served compressed
    return raw.decode("utf-8", errors="replace").lstrip()


def load_catalog(
    settings: AdvisorySettings,
    cache_dir: Path,
    *,
    feed_args: Sequence[str] = (),
    offline: bool | None = None,
    sources: Mapping[str, str] | None = None,
) -> Catalog:
    """Every feed read whole (or BadInput naming the one that is not).

    `sources`: source package -> oldest installed version, to read only what matters.
    The feeds that need no repository (tracker, OSV) are read first, before the
    repositories' indexes are fetched: a bad feed is refused before anything is downloaded
    or cached (bad input changes nothing, not even the cache)."""
    policy = policy_for(settings, cache_dir, offline)
    if feed_args:
        wanted = [parse_feed_arg(arg, policy) for arg in feed_args]
    else:
        configured = settings.effective_feeds()
        if not configured:
            raise BadInput(
                "no advisory feed: bluegreen.yml has no `advisories:` feeds or repositories",
                hint="pass --feed FILE|URL, or add `advisories: {feeds: [...]}` to bluegreen.yml"
                " (see the README, 'Security advisories')",
            )
        wanted = [(f.kind, f.url or "") for f in configured]
    read: dict[int, FeedData] = {
        i: _source(kind, location, settings, policy, None).load(sources)
        for i, (kind, location) in enumerate(wanted) if kind != "changelog"
    }
    specs = settings.repo_specs()
    index: RepositoryIndex | None = load_index(specs, settings.architecture, policy) if specs else None
    for i, (kind, location) in enumerate(wanted):
        if kind == "changelog":
            read[i] = _source(kind, location, settings, policy, index).load(sources)
    loaded = [read[i] for i in range(len(wanted))]
    available: dict[str, str] | None = None
    binaries: dict[str, str] = {}
    sources_of: dict[str, set[str]] | None = None
    if index is not None:
        available = {}
        sources_of = {}
        for p in index.packages:
            sources_of.setdefault(p.name, set()).add(p.source)
            seen = available.get(p.source)
            if seen is None or _newer(p.source_version, seen):
                available[p.source] = p.source_version
            if p.name not in binaries or _newer(p.version, binaries[p.name]):
                binaries[p.name] = p.version
    return Catalog(
        [v for d in loaded for v in d.vulnerabilities],
        feeds=[d.name for d in loaded],
        notes=[n for d in loaded for n in d.notes],
        available=available,
        binaries=binaries,
        sources_of=sources_of,
    )


def _newer(a: str, b: str) -> bool:
    from orchestrator.advisories.versions import compare

    return compare(a, b) > 0


def _source(
    kind: str,
    location: str,
    settings: AdvisorySettings,
    policy: FetchPolicy,
    index: RepositoryIndex | None,
) -> AdvisorySource:
    if kind == "debian-tracker":
        from orchestrator.advisories.tracker import TrackerSource

        return TrackerSource(location, settings.release, policy)
    if kind == "osv":
        from orchestrator.advisories.osv import OsvSource

        return OsvSource(location, settings.ecosystem, policy)
    from orchestrator.advisories.changelog import ChangelogSource

    if location:
        spec = settings.spec_for(
            location if len(location.split()) > 1 else f"{location} ./", "--feed")
        index = load_index([spec], settings.architecture, policy)
    if index is None:
        raise BadInput("the changelog feed needs a repository", hint="see advisories.repositories")
    return ChangelogSource(index, policy)
