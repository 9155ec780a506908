"""What a patch run changed, read from each host's package database before and after.

Whatever the playbook is (ours, or a user's role run unmodified), bluegreen reads every
installed package and version on each host right before the playbook and right after it,
and reports the difference: `N packages changed on M hosts` and the list. The side's patch
level is taken from what is installed afterwards, not from what was asked.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

#: One line per installed package: name (with :arch for multi-arch packages), version, state.
SNAPSHOT_COMMAND = (
    "if command -v dpkg-query >/dev/null 2>&1; then "
    "dpkg-query -W -f='${binary:Package}\\t${Version}\\t${db:Status-Abbrev}\\n'; "
    "elif command -v rpm >/dev/null 2>&1; then "
    "rpm -qa --qf '%{NAME}.%{ARCH}\\t%{EPOCHNUM}:%{VERSION}-%{RELEASE}\\tii\\n'; "
    "else echo 'no dpkg-query or rpm on this host' >&2; exit 3; fi"
)
# dpkg's second status letter: installed (i), or installed with triggers awaited/pending
_INSTALLED = frozenset("iWt")
_STATES = {"n": "not-installed", "c": "config-files", "U": "unpacked", "H": "half-installed",
           "F": "half-configured"}  # fmt: skip

Snapshot = dict[str, str]
"""package -> version ("VERSION (state)" for a package dpkg left half-done)."""


def parse_snapshot(text: str) -> Snapshot:
    found: Snapshot = {}
    for line in text.splitlines():
        parts = line.strip("\r").split("\t")
        if len(parts) < 3 or not parts[0] or not parts[1]:
            continue
        name, version, abbrev = parts[0], parts[1], parts[2].strip()
        state = abbrev[1:2]
        if state in _INSTALLED:
            found[name] = version
        elif state in _STATES and state not in ("n", "c"):
            found[name] = f"{version} ({_STATES[state]})"
    return found


def base_name(package: str) -> str:
    """`libssl3:amd64` -> `libssl3` (dpkg), `openssl.x86_64` stays as rpm writes it."""
    return package.split(":", 1)[0]


@dataclass(frozen=True, order=True)
class PackageDelta:
    """One package on one host: `before`/`after` None when it was not installed."""

    name: str
    before: str | None
    after: str | None

    def __str__(self) -> str:
        if self.before is None:
            return f"{self.name} (new) {self.after}"
        if self.after is None:
            return f"{self.name} {self.before} (removed)"
        return f"{self.name} {self.before} -> {self.after}"


def diff(before: Snapshot, after: Snapshot) -> list[PackageDelta]:
    names = sorted(set(before) | set(after))
    return [
        PackageDelta(n, before.get(n), after.get(n)) for n in names if before.get(n) != after.get(n)
    ]


@dataclass
class SideChanges:
    """The changes on each host of a side. `unread`: host -> why it could not be compared."""

    hosts: dict[str, list[PackageDelta]] = field(default_factory=dict)
    unread: dict[str, str] = field(default_factory=dict)
    after: dict[str, Snapshot] = field(default_factory=dict)

    @property
    def changed_hosts(self) -> list[str]:
        return sorted(h for h, deltas in self.hosts.items() if deltas)

    @property
    def packages(self) -> list[str]:
        return sorted({d.name for deltas in self.hosts.values() for d in deltas})

    def summary(self) -> str:
        n, m = len(self.packages), len(self.changed_hosts)
        text = f"{n} package{'s' if n != 1 else ''} changed on {m} host{'s' if m != 1 else ''}"
        if self.unread:
            text += f" (not read on {', '.join(sorted(self.unread))})"
        return text

    def lines(self, limit: int = 20) -> list[str]:
        """The changes, each once with the number of hosts it happened on."""
        counts = Counter(str(d) for deltas in self.hosts.values() for d in deltas)
        total = len(self.hosts)
        out = [
            f"{text} ({count}/{total} hosts)" if count != total else text
            for text, count in sorted(counts.items())
        ]
        if len(out) > limit:
            out = out[:limit] + [f"... and {len(out) - limit} more"]
        return out

    def as_dict(self) -> dict[str, object]:
        return {
            "summary": self.summary(),
            "hosts": {h: [str(d) for d in deltas] for h, deltas in sorted(self.hosts.items())},
            "unread": dict(sorted(self.unread.items())),
        }


def compare(
    before: Mapping[str, Snapshot | str], after: Mapping[str, Snapshot | str]
) -> SideChanges:
    """Snapshots per host (or why a host could not be read) -> the side's changes."""
    result = SideChanges()
    for host in sorted(set(before) | set(after)):
        b, a = before.get(host, "not read"), after.get(host, "not read")
        if isinstance(a, dict):
            result.after[host] = a
        if isinstance(b, str) or isinstance(a, str):
            why = b if isinstance(b, str) else a
            result.unread[host] = f"{'before' if isinstance(b, str) else 'after'}: {why}"
            continue
        result.hosts[host] = diff(b, a)
    return result


def installed_level(names: Sequence[str], after: Mapping[str, Snapshot]) -> str | None:
    """The patch level from what is installed: `name=version` for each asked package, sorted
    (`name=v1|v2` when the hosts differ, `name=none` when it is not installed). None when no
    host could be read."""
    if not after or not names:
        return None
    parts = []
    for name in sorted(set(names)):
        seen = {version_of(snap, name) for snap in after.values()}
        parts.append(f"{name}={'|'.join(sorted(seen))}")
    return ",".join(parts)


def version_of(snap: Snapshot, name: str) -> str:
    """The installed version of `name` (any architecture), or "none"."""
    versions = sorted({v for pkg, v in snap.items() if pkg == name or base_name(pkg) == name})
    return "|".join(versions) if versions else "none"
