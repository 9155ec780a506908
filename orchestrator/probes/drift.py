"""Drift: the two sides of a service must be mirror images except for the patch.

A `Fingerprint` per host (installed packages with versions, enabled unit files, running
services, listening TCP ports, sha256 of configured files) is read with one command over the
host's one strict SSH connection of the run (a `ConnectionPool`, shared with the gate's checks
and suites when drift is part of a verification). `compare_sides` says which host differs from what, and why:
hosts within a side must match, and the standby must match the live side except for the
packages the patch changed. An unreachable host is an error, never "no drift".
"""

from __future__ import annotations

import dataclasses
import shlex
import time
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from orchestrator.probes.base import CheckResult, ProbeTarget
from orchestrator.probes.connection import CommandTimeout, ProbeConnectionError
from orchestrator.probes.pool import ConnectionPool, shared
from orchestrator.probes.security import (
    SECTIONS,
    SECURITY_KINDS,
    parse_section,
    setuid_explained_by_patch,
)

BASE_KINDS: tuple[str, ...] = ("package", "unit-enabled", "unit-running", "port", "file")
KINDS: tuple[str, ...] = (*BASE_KINDS, *SECURITY_KINDS)
"""Every kind a fingerprint can hold: what mirrors share, then the security part
(`probes.security`)."""
DEFAULT_FILES = ("/etc/ssh/sshd_config",)

# Units that come and go with our own SSH sessions (pam_systemd): never drift.
_VOLATILE_UNIT_PREFIXES = ("user@", "user-runtime-dir@", "session-")

_MARK = "@@bluegreen-drift@@"


def kinds_read(security: bool) -> tuple[str, ...]:
    return KINDS if security else BASE_KINDS


def fingerprint_script(files: Sequence[str], security: bool = True) -> str:
    """One shell command that prints every section, each after a marker line (with
    `security`, also the sections of `probes.security`)."""
    quoted = " ".join(shlex.quote(f) for f in files)
    sections = [
        ("package", "dpkg-query -W -f='${db:Status-Abbrev}\\t${Package}\\t${Version}\\n'"),
        # What `systemctl enable/disable/mask` changes: the symlinks under /etc/systemd/system
        # (`systemctl list-unit-files --state=enabled` says less and takes ~1 s).
        ("unit-enabled", "find /etc/systemd/system -type l -printf '%P\\t%l\\n'"),
        (
            "unit-running",
            "systemctl list-units --state=running --type=service --no-legend --no-pager --plain",
        ),
        ("port", "ss -Htln"),
        (
            "file",
            f'for f in {quoted}; do if [ -f "$f" ]; then sha256sum "$f";'
            ' else echo "absent  $f"; fi; done'
            if files
            else "true",
        ),
    ]
    if security:
        sections += SECTIONS
    parts = [f"echo '{_MARK} {kind}'; {cmd} 2>&1; echo \"{_MARK}-rc $?\"" for kind, cmd in sections]
    return "LC_ALL=C; export LC_ALL; " + "; ".join(parts)


@dataclasses.dataclass(frozen=True)
class Fingerprint:
    """What must be the same on mirrored hosts. Values per kind: key -> value."""

    host: str
    items: Mapping[str, Mapping[str, str]]

    def get(self, kind: str, key: str) -> str | None:
        return self.items.get(kind, {}).get(key)

    def keys(self) -> set[tuple[str, str]]:
        return {(kind, key) for kind, values in self.items.items() for key in values}

    def as_dict(self) -> dict[str, dict[str, str]]:
        """Sorted and stable (for baseline files)."""
        return {
            kind: dict(sorted(self.items.get(kind, {}).items()))
            for kind in KINDS
            if kind in self.items
        }


class FingerprintError(Exception):
    """A section of the fingerprint could not be read."""


def parse_fingerprint(host: str, output: str, security: bool = True) -> Fingerprint:
    """Parse the output of `fingerprint_script`; a failed or missing section raises."""
    sections: dict[str, list[str]] = {}
    rcs: dict[str, int] = {}
    current: str | None = None
    for line in output.splitlines():
        if line.startswith(_MARK + "-rc "):
            if current is not None:
                rcs[current] = int(line.split()[-1])
            current = None
        elif line.startswith(_MARK + " "):
            current = line.split(None, 1)[1].strip()
            sections[current] = []
        elif current is not None:
            sections[current].append(line)
    items: dict[str, dict[str, str]] = {}
    for kind in kinds_read(security):
        if kind not in sections or kind not in rcs:
            raise FingerprintError(f"no {kind} section in the fingerprint output")
        if rcs[kind] != 0:
            tail = " ".join(sections[kind])[-200:]
            raise FingerprintError(f"{kind} section failed (rc {rcs[kind]}): {tail}")
        items[kind] = (
            dict(_parse_section(kind, sections[kind]))
            if kind in BASE_KINDS
            else parse_section(kind, sections[kind])
        )
    return Fingerprint(host, items)


def _parse_section(kind: str, lines: Iterable[str]) -> Iterable[tuple[str, str]]:
    for line in lines:
        if not line.strip():
            continue
        if kind == "package":
            status, _, rest = line.partition("\t")
            name, _, version = rest.partition("\t")
            if status.startswith("ii") and name:
                yield name, version
        elif kind == "unit-enabled":
            link, _, dest = line.partition("\t")
            if link and not link.rsplit("/", 1)[-1].startswith(_VOLATILE_UNIT_PREFIXES):
                yield link, "masked" if dest.strip() == "/dev/null" else "enabled"
        elif kind == "unit-running":
            parts = line.split()
            if parts and not parts[0].startswith(_VOLATILE_UNIT_PREFIXES):
                yield parts[0], "running"
        elif kind == "port":
            parts = line.split()
            if len(parts) >= 4:
                addr, _, port = parts[3].rpartition(":")
                if port.isdigit():
                    yield f"tcp/{port}", _address_class(addr)
        elif kind == "file":
            digest, _, path = line.partition("  ")
            if path:
                yield path.strip(), digest.strip()


def _address_class(addr: str) -> str:
    """Listening addresses differ per host; what must match is their kind."""
    addr = addr.split("%", 1)[0].strip("[]")
    if addr in ("*", "0.0.0.0", "::"):
        return "any"
    if addr.startswith("127.") or addr == "::1":
        return "loopback"
    return "host-address"


def read_fingerprint(
    target: ProbeTarget,
    files: Sequence[str],
    timeout: float,
    pool: ConnectionPool | None = None,
    security: bool = True,
) -> Fingerprint:
    """One command over the host's connection in `pool` (default: a connection of its own).

    Raises ProbeConnectionError, CommandTimeout or FingerprintError.
    """
    with shared(pool) as connections:
        conn = connections.get(target, timeout=timeout)
        rc, out, err = conn.run(fingerprint_script(files, security), timeout)
    if rc != 0 and _MARK not in out:
        raise FingerprintError(f"fingerprint command failed (rc {rc}): {err.strip()[:200]}")
    return parse_fingerprint(target.name, out, security)


def read_fingerprints(
    targets: Sequence[ProbeTarget],
    files: Sequence[str] = DEFAULT_FILES,
    deadline_s: float = 60.0,
    concurrency: int = 16,
    *,
    pool: ConnectionPool | None = None,
    security: bool = True,
) -> tuple[dict[str, Fingerprint], dict[str, str]]:
    """Fingerprints of every target in parallel: (fingerprints, errors by host).

    `pool`: the run's connections (default: our own, one per host, closed before we return).
    """
    fps: dict[str, Fingerprint] = {}
    errors: dict[str, str] = {}
    if not targets:
        return fps, errors

    def one(target: ProbeTarget, connections: ConnectionPool) -> None:
        try:
            fps[target.name] = read_fingerprint(target, files, deadline_s, connections, security)
        except (ProbeConnectionError, CommandTimeout) as exc:
            errors[target.name] = exc.message
        except FingerprintError as exc:
            errors[target.name] = str(exc)
        except Exception as exc:  # noqa: BLE001 - an unreadable host is an error, not a crash
            errors[target.name] = f"{type(exc).__name__}: {exc}"

    with (
        shared(pool) as connections,
        ThreadPoolExecutor(max_workers=max(1, min(concurrency, len(targets)))) as workers,
    ):
        list(workers.map(lambda t: one(t, connections), targets))
    return fps, errors


# ---------------------------------------------------------------------------------------
# Comparison (pure)
# ---------------------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class Difference:
    host: str
    kind: str
    key: str
    expected: str | None
    actual: str | None
    against: str
    """What the host was compared with: "live side", "own side", "baseline"."""

    def describe(self) -> str:
        from orchestrator.probes.security import short_value as show

        return (
            f"{self.kind} {self.key}: {show(self.actual)}, expected {show(self.expected)}"
            f" ({self.against})"
        )

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclasses.dataclass
class DriftReport:
    hosts: tuple[str, ...]
    differences: list[Difference]
    errors: dict[str, str]
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return not self.differences and not self.errors

    def by_host(self) -> dict[str, list[Difference]]:
        out: dict[str, list[Difference]] = {h: [] for h in self.hosts}
        for d in self.differences:
            out.setdefault(d.host, []).append(d)
        return out

    def summary(self) -> str:
        if self.ok:
            return f"no drift on {len(self.hosts)} host(s)"
        parts = [f"{h}: {why}" for h, why in sorted(self.errors.items())]
        for host, diffs in self.by_host().items():
            if diffs:
                parts.append(f"{host}: " + "; ".join(d.describe() for d in diffs[:3]))
        return "drift: " + " | ".join(parts)

    def results(self, hosts: Sequence[str] | None = None) -> list[CheckResult]:
        """One "drift" result per host (for the gate's table)."""
        out: list[CheckResult] = []
        grouped = self.by_host()
        for host in hosts if hosts is not None else self.hosts:
            if host in self.errors:
                out.append(CheckResult(host, "drift", "error", self.errors[host], self.seconds))
                continue
            diffs = grouped.get(host, [])
            if diffs:
                shown = "; ".join(d.describe() for d in diffs[:10])
                more = f" (+{len(diffs) - 10} more)" if len(diffs) > 10 else ""
                out.append(CheckResult(host, "drift", "fail", shown + more, self.seconds))
            else:
                out.append(CheckResult(host, "drift", "pass", "matches", self.seconds))
        return out

    def as_dict(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "hosts": list(self.hosts),
            "errors": dict(sorted(self.errors.items())),
            "differences": [d.as_dict() for d in self.differences],
            "seconds": round(self.seconds, 3),
        }


def _majority(values: Sequence[str | None], tiebreak: Counter[str | None]) -> str | None:
    counts = Counter(values)
    return max(counts, key=lambda v: (counts[v], tiebreak[v], "" if v is None else v))


def _consensus(
    fps: Sequence[Fingerprint], tiebreak: Mapping[tuple[str, str], Counter[str | None]]
) -> dict[tuple[str, str], str | None]:
    keys = set().union(*(fp.keys() for fp in fps)) if fps else set()
    return {
        k: _majority([fp.get(*k) for fp in fps], tiebreak.get(k, Counter())) for k in sorted(keys)
    }


def compare_sides(
    side: Mapping[str, Fingerprint],
    other: Mapping[str, Fingerprint],
    *,
    patched_packages: Iterable[str] | None = (),
) -> list[Difference]:
    """Differences of `side` (the standby) against `other` (the live side) and within both.

    `patched_packages`: names whose versions may differ between the sides (the patch);
    None means any package version may differ (security updates), though not its presence.
    Hosts within one side must match each other in everything.
    """
    allowed = None if patched_packages is None else set(patched_packages)
    every = [*side.values(), *other.values()]
    tiebreak: dict[tuple[str, str], Counter[str | None]] = {}
    for k in set().union(*(fp.keys() for fp in every)) if every else set():
        tiebreak[k] = Counter(fp.get(*k) for fp in every)
    diffs: list[Difference] = []

    def may_differ(kind: str, key: str, a: str | None, b: str | None,
                   host: Fingerprint | None = None) -> bool:
        if a is None or b is None:
            return False
        if kind == "setuid" and host is not None:  # replaced by the patch's package upgrade
            this = host

            def upgraded(pkg: str) -> bool:
                old, new = ref.get(("package", pkg)), this.get("package", pkg)
                return old != new and may_differ("package", pkg, old, new)

            return setuid_explained_by_patch(a, b, upgraded)
        if kind != "package":
            return False
        return allowed is None or key in allowed

    own = _consensus(list(side.values()), tiebreak)
    ref = _consensus(list(other.values()), tiebreak) if other else {}
    for host in sorted(side):
        fp = side[host]
        for kind, key in sorted(set(own) | set(ref) | fp.keys()):
            actual = fp.get(kind, key)
            if other:
                expected = ref.get((kind, key))
                if actual != expected and not may_differ(kind, key, expected, actual, fp):
                    diffs.append(Difference(host, kind, key, expected, actual, "live side"))
                    continue
            expected = own.get((kind, key))
            if actual != expected:
                diffs.append(Difference(host, kind, key, expected, actual, "own side"))
    for host in sorted(other):
        fp = other[host]
        for kind, key in sorted(set(ref) | fp.keys()):
            actual, expected = fp.get(kind, key), ref.get((kind, key))
            if actual != expected:
                diffs.append(Difference(host, kind, key, expected, actual, "own side"))
    return diffs


def compare_to_baseline(
    fps: Mapping[str, Fingerprint], baseline: Mapping[str, Mapping[str, str]]
) -> list[Difference]:
    """Differences of each host against an approved baseline (kinds absent there: ignored)."""
    diffs: list[Difference] = []
    for host in sorted(fps):
        fp = fps[host]
        for kind in KINDS:
            if kind not in baseline:
                continue
            want = baseline[kind]
            have = fp.items.get(kind, {})
            for key in sorted(set(want) | set(have)):
                if want.get(key) != have.get(key):
                    diffs.append(
                        Difference(host, kind, key, want.get(key), have.get(key), "baseline")
                    )
    return diffs


def timed_report(
    hosts: Sequence[str], started: float, diffs: list[Difference], errors: dict[str, str]
) -> DriftReport:
    return DriftReport(tuple(hosts), diffs, errors, time.monotonic() - started)
