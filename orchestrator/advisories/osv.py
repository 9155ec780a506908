"""OSV records (https://ossf.github.io/osv-schema/) for the Debian and Ubuntu ecosystems.

A feed is one record (a JSON object with `id`), a JSON list of records, a directory of
`*.json` records, or a `.zip` of them (OSV's bulk download, e.g. `Debian/all.zip`). Only
`affected[]` entries of the configured ecosystem are used: `Debian:12` matches exactly,
`Ubuntu:22.04` also matches `Ubuntu:22.04:LTS`. Packages are source packages; ranges of
type ECOSYSTEM give [introduced, fixed) windows (`last_affected` inclusive); urgency from
`ecosystem_specific.urgency` (Debian) or a `severity` of type `Ubuntu`.
"""

from __future__ import annotations

import zipfile
from collections.abc import Collection, Iterator
from pathlib import Path
from typing import Any

from orchestrator.advisories import versions
from orchestrator.advisories.base import (
    CVE_RE,
    FeedData,
    Vulnerability,
    bad_feed,
    check_source_name,
    normalize_urgency,
)
from orchestrator.advisories.decompress import decompressed_cap, too_big
from orchestrator.advisories.fetch import FetchPolicy, fetch, is_url
from orchestrator.nesting import TooDeep, loads_json

_PREFIXES = ("DEBIAN-", "UBUNTU-")
MAX_RECORDS = 2_000_000


class OsvSource:
    def __init__(self, location: str, ecosystem: str, policy: FetchPolicy) -> None:
        self.location = location
        self.ecosystem = ecosystem
        self.policy = policy
        self.name = f"osv {location} ({ecosystem})"

    def load(self, sources: Collection[str] | None = None) -> FeedData:
        wanted = set(sources) if sources is not None else None
        data = FeedData(self.name)
        skipped = 0
        for where, record in self._records(data):
            try:
                found = parse_record(record, self.ecosystem, where)
            except versions.Unreadable as exc:
                data.notes.append(f"{where}: {exc}")
                continue
            if found is None:
                skipped += 1
                continue
            data.vulnerabilities += [
                v for v in found if wanted is None or v.source in wanted
            ]
        if skipped:
            data.notes.append(f"{self.name}: {skipped} record(s) without a CVE id skipped")
        return data

    def _records(self, data: FeedData) -> Iterator[tuple[str, object]]:
        local = Path(self.location.removeprefix("file://")).expanduser()
        if not is_url(self.location) and local.is_dir():
            files = sorted(local.rglob("*.json"))
            if not files:
                raise bad_feed(str(local), "no *.json OSV records in this directory")
            total = 0
            for f in files:
                total += f.stat().st_size
                if total > self.policy.max_bytes:
                    raise bad_feed(str(local), f"more than {self.policy.max_bytes / 1e6:.0f} MB")
                yield from _documents(f.read_bytes(), f"{local}/{f.relative_to(local)}")
            return
        got = fetch(self.location, self.policy)
        data.notes += got.notes
        if zipfile.is_zipfile(got.path):
            yield from _zip_records(got.path, got.origin, self.policy.max_bytes)
        else:
            yield from _documents(got.read_bytes(self.policy), got.origin)


def _zip_records(path: Path, name: str, max_bytes: int) -> Iterator[tuple[str, object]]:
    try:
        with zipfile.ZipFile(path) as archive:
            members = [m for m in archive.infolist() if m.filename.endswith(".json")]
            if len(members) > MAX_RECORDS:
                raise bad_feed(name, f"{len(members)} files: more than {MAX_RECORDS}")
            # zipfile stops each member at its declared size (a liar fails its CRC)
            cap = decompressed_cap(path.stat().st_size, max_bytes)
            if sum(m.file_size for m in members) > cap:
                raise too_big(name, cap)
            for m in members:
                yield from _documents(archive.read(m), f"{name}:{m.filename}")
    except (zipfile.BadZipFile, EOFError, OSError) as exc:
        raise bad_feed(name, f"damaged or truncated zip ({exc})") from None


def _documents(content: bytes, name: str) -> Iterator[tuple[str, object]]:
    try:
        doc = loads_json(content)
    except TooDeep as exc:
        raise bad_feed(name, f"{exc} (an OSV record nests about 7)") from None
    except UnicodeDecodeError as exc:
        raise bad_feed(name, f"not UTF-8 text (byte {exc.start})") from None
    except ValueError as exc:
        raise bad_feed(name, f"malformed or truncated JSON ({exc})") from None
    if isinstance(doc, dict):
        yield name, doc
    elif isinstance(doc, list):
        for i, record in enumerate(doc):
            yield f"{name}[{i}]", record
    else:
        raise bad_feed(name, "expected an OSV record (an object) or a list of them")


def cve_ids(record: dict[str, Any], where: str) -> list[str]:
    """The CVE ids an OSV record is about: its id (CVE-..., DEBIAN-CVE-..., UBUNTU-CVE-...)
    and its aliases / upstream that are CVE ids."""
    found: list[str] = []
    candidates = [record.get("id")]
    for key in ("aliases", "upstream"):
        value = record.get(key, [])
        if not isinstance(value, list):
            raise bad_feed(where, f"{key}: expected a list, got {type(value).__name__}")
        candidates += value
    for value in candidates:
        if not isinstance(value, str):
            raise bad_feed(where, f"id or alias {str(value)[:40]!r} is not a string")
        text = value
        for prefix in _PREFIXES:
            text = text.removeprefix(prefix)
        if text.upper().startswith("CVE-"):
            if not CVE_RE.match(text):
                raise bad_feed(where, f"{value[:80]!r} is not a CVE id (CVE-YYYY-NNNN)")
            if text not in found:
                found.append(text)
    return found


def parse_record(record: object, ecosystem: str, where: str) -> list[Vulnerability] | None:
    """The record's vulnerabilities in `ecosystem` (None: it names no CVE)."""
    if not isinstance(record, dict):
        raise bad_feed(where, f"expected an OSV record (an object), got {type(record).__name__}")
    if not isinstance(record.get("id"), str):
        raise bad_feed(where, "an OSV record needs a string `id`")
    where = f"{where} ({record['id'][:60]})"
    cves = cve_ids(record, where)
    affected = record.get("affected", [])
    if not isinstance(affected, list):
        raise bad_feed(where, "affected: expected a list")
    if not cves:
        return None
    summary = record.get("summary") or record.get("details") or ""
    if not isinstance(summary, str):
        raise bad_feed(where, "summary/details: expected a string")
    found: list[Vulnerability] = []
    for i, entry in enumerate(affected):
        spot = f"{where} affected[{i}]"
        if not isinstance(entry, dict) or not isinstance(entry.get("package"), dict):
            raise bad_feed(spot, "expected an object with a `package` object")
        package = entry["package"]
        eco = package.get("ecosystem")
        if not isinstance(eco, str):
            raise bad_feed(spot, "package.ecosystem: expected a string")
        if eco != ecosystem and not eco.startswith(ecosystem + ":"):
            continue
        source = check_source_name(package.get("name"), spot, "package.name")
        urgency = _urgency(entry, record, spot)
        for introduced, fixed, last in _windows(entry, spot):
            found += [
                Vulnerability(
                    cve=cve,
                    source=source,
                    fixed_version=fixed,
                    urgency=urgency,
                    feed="osv",
                    introduced=introduced,
                    last_affected=last,
                    description=summary[:300],
                )
                for cve in cves
            ]
    return found


def _windows(entry: dict[str, Any], where: str) -> list[tuple[str, str | None, str | None]]:
    """(introduced, fixed, last_affected) of each ECOSYSTEM range of an affected entry."""
    ranges = entry.get("ranges", [])
    if not isinstance(ranges, list):
        raise bad_feed(where, "ranges: expected a list")
    out: list[tuple[str, str | None, str | None]] = []
    for j, rng in enumerate(ranges):
        if not isinstance(rng, dict) or not isinstance(rng.get("events"), list):
            raise bad_feed(where, f"ranges[{j}]: expected an object with an `events` list")
        if rng.get("type") != "ECOSYSTEM":
            continue
        start: str | None = None
        for k, event in enumerate(rng["events"]):
            if not isinstance(event, dict) or len(event) != 1:
                raise bad_feed(where, f"ranges[{j}].events[{k}]: expected one key per event")
            (kind, value), = event.items()
            if kind not in ("introduced", "fixed", "last_affected", "limit"):
                raise bad_feed(where, f"ranges[{j}].events[{k}]: unknown event {kind!r}")
            if not isinstance(value, str) or not (value == "0" or versions.is_valid(value)):
                raise bad_feed(
                    where, f"ranges[{j}].events[{k}].{kind}: {str(value)[:80]!r} is not a version"
                )
            if value != "0":
                versions.require_readable(value, f"{where} ranges[{j}].events[{k}].{kind}")
            if kind == "introduced":
                if start is not None:
                    out.append((start, None, None))  # a window still open
                start = value
            elif kind in ("fixed", "last_affected") and start is not None:
                out.append((start, value, None) if kind == "fixed" else (start, None, value))
                start = None
        if start is not None:
            out.append((start, None, None))
    return out


def _urgency(entry: dict[str, Any], record: dict[str, Any], where: str) -> str:
    specific = entry.get("ecosystem_specific") or {}
    if isinstance(specific, dict) and isinstance(specific.get("urgency"), str):
        return normalize_urgency(specific["urgency"])
    severity = record.get("severity") or []
    if not isinstance(severity, list):
        raise bad_feed(where, "severity: expected a list")
    for item in severity:
        if isinstance(item, dict) and item.get("type") == "Ubuntu":
            return normalize_urgency(item.get("score"))
    return normalize_urgency(None)
