"""The Debian Security Tracker's JSON (https://security-tracker.debian.org/tracker/data/json).

Shape: `{source_package: {CVE-or-TEMP-id: {description, scope, debianbug, releases:
{release: {status, repositories: {suite: version}, fixed_version, urgency, nodsa,
nodsa_reason}}}}}`. Tens of MB: it is decoded one source package at a time (only the
configured release's fields are kept), and what was kept is cached next to the feed, keyed
by the feed's size, mtime and release, so the next command does not decode it again.

Statuses: `resolved` with `fixed_version` (`"0"`: never affected), `open` (no fix yet),
`undetermined` (counted as open: unknown is not safe). TEMP-* ids (issues without a CVE
yet) are skipped and counted; any other id that is not a CVE id rejects the feed.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Collection, Iterator
from dataclasses import asdict
from pathlib import Path
from typing import Any

from orchestrator.advisories import versions
from orchestrator.advisories.base import (
    CVE_RE,
    TEMP_ID_RE,
    FeedData,
    Vulnerability,
    bad_feed,
    check_source_name,
    normalize_urgency,
)
from orchestrator.advisories.fetch import FetchPolicy, fetch
from orchestrator.nesting import MAX_DEPTH, TooDeep, check_depth

FORMAT = 1
_STATUSES = ("resolved", "open", "undetermined")


class TrackerSource:
    """Vulnerabilities of one Debian release from the tracker's JSON."""

    def __init__(self, location: str, release: str, policy: FetchPolicy) -> None:
        self.location = location
        self.release = release
        self.policy = policy
        self.name = f"debian-tracker {location} ({release})"

    def load(self, sources: Collection[str] | None = None) -> FeedData:
        got = fetch(self.location, self.policy)
        st = got.path.stat()
        key = hashlib.sha256(
            f"{FORMAT} {got.path} {st.st_size} {st.st_mtime_ns} {self.release}".encode()
        ).hexdigest()[:24]
        index = self.policy.cache_dir / f"tracker-{key}.json"
        data = _read_index(index)
        if data is None:
            data = parse(got.read_bytes(self.policy), self.release, got.origin)
            _write_index(index, data)
        wanted = set(sources) if sources is not None else None
        vulns = [
            Vulnerability(**v)
            for v in data.vulnerabilities_raw
            if wanted is None or v["source"] in wanted
        ]
        return FeedData(self.name, vulns, [*got.notes, *data.notes])


class _Parsed:
    def __init__(self, vulnerabilities_raw: list[dict[str, Any]], notes: list[str]) -> None:
        self.vulnerabilities_raw = vulnerabilities_raw
        self.notes = notes


def parse(content: bytes, release: str, feed: str) -> _Parsed:
    """The release's vulnerabilities from the whole JSON document (BadInput when it is not
    whole and well-formed)."""
    try:
        text = content.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise bad_feed(feed, f"not UTF-8 text (byte {exc.start})") from None
    raw: list[dict[str, Any]] = []
    notes: list[str] = []
    temp = 0
    for source, entries in _top_level(text, feed):
        check_source_name(source, feed, "source package")
        if not isinstance(entries, dict):
            raise bad_feed(feed, f"{source}: expected an object of CVE ids, got {_kind(entries)}")
        for issue, entry in entries.items():
            if TEMP_ID_RE.match(issue):
                temp += 1
                continue
            if not CVE_RE.match(issue):
                raise bad_feed(feed, f"{source}: {issue[:80]!r} is not a CVE id (CVE-YYYY-NNNN)")
            try:
                vuln = _vulnerability(source, issue, entry, release, feed)
            except versions.Unreadable as exc:
                notes.append(f"{feed}: {exc}")
                continue
            if vuln is not None:
                raw.append(asdict(vuln))
    if temp:
        notes.append(f"{feed}: {temp} issue(s) without a CVE id yet (TEMP-*) skipped")
    return _Parsed(raw, notes)


def _vulnerability(
    source: str, cve: str, entry: object, release: str, feed: str
) -> Vulnerability | None:
    where = f"{source}.{cve}"
    if not isinstance(entry, dict):
        raise bad_feed(feed, f"{where}: expected an object, got {_kind(entry)}")
    releases = entry.get("releases", {})
    if not isinstance(releases, dict):
        raise bad_feed(feed, f"{where}.releases: expected an object, got {_kind(releases)}")
    rel = releases.get(release)
    if rel is None:
        return None
    where = f"{where}.releases.{release}"
    if not isinstance(rel, dict):
        raise bad_feed(feed, f"{where}: expected an object, got {_kind(rel)}")
    status = rel.get("status")
    if status not in _STATUSES:
        raise bad_feed(feed, f"{where}.status: {str(status)[:40]!r} is not one of {_STATUSES}")
    fixed = rel.get("fixed_version")
    if fixed is not None and not isinstance(fixed, str):
        raise bad_feed(feed, f"{where}.fixed_version: expected a string, got {_kind(fixed)}")
    if fixed is not None and not versions.is_valid(fixed):
        raise bad_feed(feed, f"{where}.fixed_version: {fixed[:80]!r} is not a Debian version")
    if fixed is not None and fixed != "0":
        versions.require_readable(fixed, f"{where}.fixed_version")
    urgency = rel.get("urgency", "")
    if not isinstance(urgency, str):
        raise bad_feed(feed, f"{where}.urgency: expected a string, got {_kind(urgency)}")
    nodsa = rel.get("nodsa")
    if nodsa is not None and not isinstance(nodsa, str | bool):
        raise bad_feed(feed, f"{where}.nodsa: expected a string, got {_kind(nodsa)}")
    description = entry.get("description") or ""
    if not isinstance(description, str):
        raise bad_feed(feed, f"{source}.{cve}.description: expected a string")
    if status == "resolved":
        if fixed is None:
            raise bad_feed(feed, f"{where}: resolved without a fixed_version")
        if fixed == "0":
            return None  # never affected in this release
    else:
        fixed = None  # open or undetermined: no version is known to be fixed
    return Vulnerability(
        cve=cve,
        source=source,
        fixed_version=fixed,
        urgency=normalize_urgency(urgency),
        feed="debian-tracker",
        description=description[:300],
        nodsa=bool(nodsa),
    )


def _top_level(text: str, feed: str) -> Iterator[tuple[str, object]]:
    """(key, value) of the top-level object, decoding one value at a time: the document is
    tens of MB, one source package's entry is small."""
    decoder = json.JSONDecoder()
    ws = " \t\r\n"
    i = _skip(text, 0, ws)
    if i >= len(text) or text[i] != "{":
        raise bad_feed(feed, "not a JSON object of source packages (the tracker's format)")
    i = _skip(text, i + 1, ws)
    if i < len(text) and text[i] == "}":
        return
    while True:
        try:
            key, i = decoder.raw_decode(text, i)
            i = _skip(text, i, ws)
            if i >= len(text) or text[i] != ":":
                raise ValueError("expected ':'")
            value, i = decoder.raw_decode(text, _skip(text, i + 1, ws))
            check_depth(value, MAX_DEPTH - 1)
        except (TooDeep, RecursionError):
            raise bad_feed(
                feed, f"{key!s:.60}: nested deeper than {MAX_DEPTH} levels (the tracker's are 5)"
            ) from None
        except ValueError as exc:
            where = "end of the document" if i >= len(text) - 1 else f"character {i}"
            raise bad_feed(feed, f"malformed or truncated JSON at {where} ({exc})") from None
        if not isinstance(key, str):
            raise bad_feed(feed, f"malformed JSON at character {i}")
        yield key, value
        i = _skip(text, i, ws)
        if i >= len(text):
            raise bad_feed(feed, "truncated JSON (the document ends inside the top object)")
        if text[i] == "}":
            if _skip(text, i + 1, ws) != len(text):
                raise bad_feed(feed, f"malformed JSON: data after the end at character {i + 1}")
            return
        if text[i] != ",":
            raise bad_feed(feed, f"malformed JSON at character {i}: expected ',' or '}}'")
        i = _skip(text, i + 1, ws)


def _skip(text: str, i: int, chars: str) -> int:
    n = len(text)
    while i < n and text[i] in chars:
        i += 1
    return i


def _kind(value: object) -> str:
    return {dict: "an object", list: "a list", str: "a string", bool: "a boolean"}.get(
        type(value), type(value).__name__
    )


def _read_index(path: Path) -> _Parsed | None:
    try:
        doc = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(doc, dict) or doc.get("format") != FORMAT:
        return None
    return _Parsed(list(doc["vulnerabilities"]), list(doc["notes"]))


def _write_index(path: Path, data: _Parsed) -> None:
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    from orchestrator.safe_write import write_file  # unpredictable temp name, O_NOFOLLOW

    doc = {"format": FORMAT, "vulnerabilities": data.vulnerabilities_raw, "notes": data.notes}
    write_file(path, json.dumps(doc))
