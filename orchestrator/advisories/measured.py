"""The newest exposure measurement per service and side, kept for those who only read.

The dashboard, the JSON API and the metrics (`serve`, `metrics --textfile`) never log in to
hosts: reading every host's package list and the feeds takes seconds and SSH, which a
read-only view must not do on every refresh. So `bluegreen exposure` and `campaign new`
(which measure anyway) leave what they found here, one entry per service and side with its
own time, and the views show it with its age. Measuring one side replaces that side's
entry and keeps the others.

The file (`exposure.json` in the advisories cache) is read as untrusted: anything that is
not the shape written here is refused as a whole with `MeasurementUnreadable`, and the
views say "not readable" instead of showing numbers from it. Stdlib only.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from orchestrator.advisories.base import UNKNOWN, URGENCIES, at_or_above, urgency_rank
from orchestrator.errors import BadInput

FILE_NAME = "exposure.json"
FORMAT = 1
URGENCY_WORDS = (*URGENCIES, UNKNOWN)
MAX_BYTES = 4_000_000
MAX_ENTRIES = 10_000


class MeasurementUnreadable(BadInput):
    """The measurement file is not what `save` writes (truncated, edited, another format)."""


@dataclass(frozen=True)
class SideMeasurement:
    """What one `exposure` found on one side: distinct open CVEs per urgency (every urgency,
    whatever threshold the command showed), hosts, and when."""

    service: str
    side: str
    measured_at: datetime
    hosts: int
    hosts_exposed: int
    """Hosts with at least one open CVE (any urgency)."""
    hosts_unread: int
    """Hosts that could not be read: the counts are then a lower bound."""
    by_urgency: dict[str, int] = field(default_factory=dict)
    fix_available: int = 0
    feeds: list[str] = field(default_factory=list)

    @property
    def open(self) -> int:
        return sum(self.by_urgency.values())

    def open_at_or_above(self, threshold: str) -> int:
        return sum(n for u, n in self.by_urgency.items() if at_or_above(u, threshold))

    def as_json(self) -> dict[str, Any]:
        return {
            "service": self.service, "side": self.side,
            "measured_at": self.measured_at.isoformat(), "open": self.open,
            "by_urgency": dict(self.by_urgency), "hosts": self.hosts,
            "hosts_exposed": self.hosts_exposed, "hosts_unread": self.hosts_unread,
            "fix_available": self.fix_available, "feeds": list(self.feeds),
        }


def path_in(cache_dir: Path) -> Path:
    return cache_dir / FILE_NAME


def load(path: Path) -> dict[tuple[str, str], SideMeasurement]:
    """(service, side) -> its newest measurement; empty when nothing was measured yet.
    Raises MeasurementUnreadable for a file that cannot be read or trusted."""
    try:
        with path.open("rb") as f:
            raw = f.read(MAX_BYTES + 1)
    except FileNotFoundError:
        return {}
    except OSError as exc:
        raise _unreadable(path, exc.strerror or str(exc)) from None
    if len(raw) > MAX_BYTES:
        raise _unreadable(path, f"larger than {MAX_BYTES // 1_000_000} MB")
    try:
        doc = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as exc:
        raise _unreadable(path, f"not JSON ({exc})") from None
    if not isinstance(doc, dict) or doc.get("format") != FORMAT or \
            not isinstance(doc.get("sides"), list) or len(doc["sides"]) > MAX_ENTRIES:
        raise _unreadable(path, f"not a format-{FORMAT} exposure record")
    out: dict[tuple[str, str], SideMeasurement] = {}
    for i, entry in enumerate(doc["sides"]):
        m = _entry(entry)
        if m is None:
            raise _unreadable(path, f"sides[{i}] is not a side measurement")
        out[(m.service, m.side)] = m
    return out


def save(path: Path, measured: Iterable[SideMeasurement]) -> Path:
    """Merge `measured` into the file (newer entries replace the same service and side).
    An unreadable old file is replaced: it held nothing the views could show."""
    from orchestrator.safe_write import write_file

    try:
        kept = load(path)
    except MeasurementUnreadable:
        kept = {}
    for m in measured:
        kept[(m.service, m.side)] = m
    doc = {"format": FORMAT, "written_at": datetime.now(UTC).isoformat(),
           "sides": [kept[k].as_json() for k in sorted(kept)]}
    return write_file(path, json.dumps(doc, indent=1, sort_keys=True) + "\n", mode=0o644,
                      make_parents=True)


def _most_urgent_first(by: dict[str, int]) -> dict[str, int]:
    return dict(sorted(by.items(), key=lambda kv: (-urgency_rank(kv[0]), kv[0])))


def _unreadable(path: Path, why: str) -> MeasurementUnreadable:
    return MeasurementUnreadable(
        f"exposure record {path}: {why}",
        hint="run `bluegreen exposure` again to measure and rewrite it")


def _count(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) and \
        0 <= value < 10**9 else None


def _entry(raw: Any) -> SideMeasurement | None:
    if not isinstance(raw, dict):
        return None
    service, side = raw.get("service"), raw.get("side")
    if not isinstance(service, str) or not service or len(service) > 200 or \
            side not in ("blue", "green"):
        return None
    try:
        at = datetime.fromisoformat(str(raw.get("measured_at")))
    except ValueError:
        return None
    if at.tzinfo is None:
        return None
    counts = [_count(raw.get(k)) for k in ("hosts", "hosts_exposed", "hosts_unread",
                                           "fix_available")]
    by = raw.get("by_urgency")
    feeds = raw.get("feeds", [])
    if None in counts or not isinstance(by, dict) or not isinstance(feeds, list) or \
            any(u not in URGENCY_WORDS or _count(n) is None for u, n in by.items()) or \
            not all(isinstance(f, str) for f in feeds):
        return None
    hosts, exposed, unread, fixable = (c or 0 for c in counts)
    return SideMeasurement(service, str(side), at.astimezone(UTC), hosts, exposed, unread,
                           _most_urgent_first({str(u): int(n) for u, n in by.items()}),
                           fixable,
                           [str(f) for f in feeds])
