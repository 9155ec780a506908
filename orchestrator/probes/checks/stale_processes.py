"""`stale-processes`: no process maps a deleted library or executable (it still runs the
unpatched code).

In bluegreen.yml (one item of a service's `checks:`)::

    - {kind: stale-processes}
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Iterable, Sequence
from typing import Any, Literal

from pydantic import Field

from orchestrator.probes.base import ProbeTarget
from orchestrator.probes.checks.base import BaseCheck, Outcome, run_command


def deleted_path_from_maps_line(line: str) -> str | None:
    """The path of a `/proc/PID/maps` line that maps a deleted file, else None."""
    parts = line.split(None, 5)
    if len(parts) < 6:
        return None
    path = parts[5].rstrip("\n")
    if not path.endswith(" (deleted)"):
        return None
    return path[: -len(" (deleted)")]


def unit_from_cgroup(text: str) -> str | None:
    """The systemd unit of a process from /proc/PID/cgroup (last .service/.scope)."""
    for line in text.replace(" ", "\n").splitlines():
        path = line.rsplit(":", 1)[-1] if ":" in line else line
        for part in reversed(path.split("/")):
            if part.endswith((".service", ".scope")):
                return part
    return None


@dataclasses.dataclass(frozen=True)
class StaleMapping:
    pid: int
    comm: str
    unit: str | None
    path: str

    def describe(self) -> str:
        unit = f", unit {self.unit}" if self.unit else ""
        return f"{self.comm} (pid {self.pid}{unit}) maps deleted {self.path}"


DEFAULT_STALE_PREFIXES = (
    "/usr/",
    "/lib/",
    "/lib32/",
    "/lib64/",
    "/libx32/",
    "/bin/",
    "/sbin/",
    "/opt/",
)
DEFAULT_STALE_IGNORE = ("memfd:", "/SYSV", "/dev/shm/")


def parse_stale_scan(
    output: str,
    prefixes: Sequence[str] = DEFAULT_STALE_PREFIXES,
    ignore: Sequence[str] = DEFAULT_STALE_IGNORE,
) -> list[StaleMapping]:
    """Parse lines `PID<TAB>COMM<TAB>CGROUP<TAB>MAPS-LINE` from the remote scan script."""
    seen: set[tuple[int, str]] = set()
    found: list[StaleMapping] = []
    for line in output.splitlines():
        fields = line.split("\t", 3)
        if len(fields) != 4 or not fields[0].isdigit():
            continue
        path = deleted_path_from_maps_line(fields[3])
        if path is None or any(token in path for token in ignore):
            continue
        if not path.startswith(tuple(prefixes)):
            continue
        key = (int(fields[0]), path)
        if key in seen:
            continue
        seen.add(key)
        found.append(StaleMapping(int(fields[0]), fields[1], unit_from_cgroup(fields[2]), path))
    return found


_STALE_SCAN = r"""
n=0
for d in /proc/[0-9]*; do
  p=${d#/proc/}
  [ "$p" = "$$" ] && continue
  [ -r "$d/maps" ] || continue
  n=$((n+1))
  m=$(grep -F '(deleted)' "$d/maps" 2>/dev/null) || continue
  c=$(cat "$d/comm" 2>/dev/null)
  g=$(tr '\n' ' ' < "$d/cgroup" 2>/dev/null)
  printf '%s\n' "$m" | while IFS= read -r l; do printf '%s\t%s\t%s\t%s\n' "$p" "$c" "$g" "$l"; done
done
echo "SCANNED $n"
"""


class StaleProcessesCheck(BaseCheck):
    """No process maps a deleted library or executable (it still runs unpatched code)."""

    kind: Literal["stale-processes"]
    prefixes: list[str] = Field(default_factory=lambda: list(DEFAULT_STALE_PREFIXES))
    ignore: list[str] = Field(default_factory=lambda: list(DEFAULT_STALE_IGNORE))

    def outcomes(self, host: Any, target: ProbeTarget) -> Iterable[Outcome]:
        cid = self.primary_id()
        rc, out, err = run_command(host, "sh -c %s", _STALE_SCAN)
        m = re.search(r"^SCANNED (\d+)$", out, re.M)
        if rc != 0 or m is None or int(m.group(1)) == 0:
            yield cid, "error", f"could not scan /proc/*/maps (rc {rc}): {err.strip()[:200]}"
            return
        stale = parse_stale_scan(out, self.prefixes, self.ignore)
        if stale:
            shown = "; ".join(s.describe() for s in stale[:20])
            more = f" (+{len(stale) - 20} more)" if len(stale) > 20 else ""
            yield cid, "fail", f"{len(stale)} stale mapping(s): {shown}{more}"
        else:
            yield cid, "pass", f"no process maps a deleted file ({m.group(1)} processes scanned)"
