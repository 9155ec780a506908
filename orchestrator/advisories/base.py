"""The records every advisory source produces, and the contract of a source.

A `Vulnerability` says: CVE X affects source package P in the versions
[introduced, fixed_version) (fixed_version None: no fix yet), with an urgency. Sources name
Debian *source* packages (`openssl`); hosts install *binary* packages (`libssl3`): the
exposure join maps one to the other with what dpkg says on the host.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Iterable
from dataclasses import dataclass, field
from typing import Protocol

from orchestrator.errors import BadInput

CVE_RE = re.compile(r"^CVE-\d{4}-\d{4,7}$")
# Debian's tracker names issues without a CVE id yet TEMP-NNNNNNN-XXXXXX: real, not a CVE.
TEMP_ID_RE = re.compile(r"^TEMP-\d{7}-[0-9A-Fa-f]{6}$")
SOURCE_NAME_RE = re.compile(r"^[a-z0-9][a-z0-9+.-]{0,127}$")

# Debian's urgencies (changelog and tracker), lowest first. "critical"/"emergency" are the
# changelog's top levels; the tracker says "not yet assigned" (or nothing) when unknown.
URGENCIES = ("unimportant", "low", "medium", "high", "critical")
UNKNOWN = "unknown"
# An unknown urgency is ranked as medium: high enough to be seen at the default threshold,
# not so high that every unassessed CVE blocks a gate set to "high".
_RANK = {u: i for i, u in enumerate(URGENCIES)} | {UNKNOWN: 2}
_ALIASES = {
    "emergency": "critical",
    "not yet assigned": UNKNOWN,
    "": UNKNOWN,
    "negligible": "unimportant",
    "untriaged": UNKNOWN,
    "end-of-life": UNKNOWN,
}


def normalize_urgency(raw: object) -> str:
    """Debian/Ubuntu urgency words -> one of URGENCIES or "unknown" ("medium**" -> medium)."""
    text = str(raw or "").strip().lower().rstrip("*").strip()
    if text in _RANK:
        return text
    return _ALIASES.get(text, UNKNOWN)


def urgency_rank(urgency: str) -> int:
    return _RANK.get(urgency, _RANK[UNKNOWN])


def at_or_above(urgency: str, threshold: str) -> bool:
    return urgency_rank(urgency) >= urgency_rank(threshold)


def check_threshold(value: str, where: str = "--min-urgency") -> str:
    """A user-given threshold, validated (BadInput naming `where`)."""
    if value not in URGENCIES:
        raise BadInput(
            f"{where}: unknown urgency {value!r}",
            hint=f"use one of: {', '.join(URGENCIES)}",
        )
    return value


def max_urgency(values: Iterable[str]) -> str:
    found = list(values)
    return max(found, key=urgency_rank) if found else UNKNOWN


@dataclass(frozen=True)
class Vulnerability:
    """One CVE in one source package, as one feed states it."""

    cve: str
    source: str
    fixed_version: str | None
    """First version without the vulnerability; None: no fix yet (every version from
    `introduced` on is affected)."""
    urgency: str = UNKNOWN
    feed: str = ""
    introduced: str = "0"
    last_affected: str | None = None
    """OSV's inclusive upper bound, when a feed gives one instead of a fixed version."""
    description: str = ""
    available_version: str | None = None
    """The version a repository offers that carries the fix (the changelog source knows)."""
    nodsa: bool = False


@dataclass
class FeedData:
    """What one feed said: its vulnerabilities, and what it skipped (with why)."""

    name: str
    vulnerabilities: list[Vulnerability] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    """Things a careful reader wants to know (entries skipped, cache used offline, ...)."""


class AdvisorySource(Protocol):
    """A source of vulnerabilities (one module per kind: tracker, osv, changelog)."""

    name: str

    def load(self, sources: Collection[str] | None = None) -> FeedData:
        """The vulnerabilities of these source packages (None: all the feed has).

        Raises BadInput naming the feed when it is malformed, truncated, too large or too
        old: nothing is decided from a feed that did not read whole."""
        ...


def bad_feed(feed: str, problem: str, fix: str | None = None) -> BadInput:
    """The one error for a feed that cannot be trusted: names the feed, says why."""
    return BadInput(
        f"advisory feed {feed}: {problem}; nothing was decided from it",
        hint=fix or "check the feed (a complete, current download in its published format)",
    )


def check_cve(value: object, feed: str, where: str) -> str:
    if not isinstance(value, str) or not CVE_RE.match(value):
        raise bad_feed(feed, f"{where}: {str(value)[:80]!r} is not a CVE id (CVE-YYYY-NNNN)")
    return value


def check_source_name(value: object, feed: str, where: str) -> str:
    if not isinstance(value, str) or not SOURCE_NAME_RE.match(value):
        raise bad_feed(feed, f"{where}: {str(value)[:80]!r} is not a Debian package name")
    return value
