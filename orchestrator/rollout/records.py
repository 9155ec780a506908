"""What each step of a rollout found, typed: the record a step returns, journals (its `end`
entry, as `as_dict()`), hands to the progress event and to the rollout's result.

The journal keeps the JSON objects runs have always kept (same keys), so runs journaled by
earlier versions resume: `from_dict` reads back the two records a resume needs (the
precheck's plan and the level the patch installed); the verify step reads back the
generation it verified (absent in older journals: the flip then binds to nothing).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from orchestrator.routers.base import TrafficCounters
from orchestrator.sides import Side

if TYPE_CHECKING:
    from orchestrator.state.models import JournalEntry

CANARY_PREFIX = "canary:"
"""The journal's name of an exposure step of the bake: `canary:N` (N from 1)."""


@dataclass(frozen=True)
class Plan:
    """The precheck's record: where traffic is and which side the run patches."""

    live: Side
    standby: Side
    standby_hosts: tuple[str, ...] = ()

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Plan:
        return cls(data["live"], data["standby"], tuple(data.get("standby_hosts") or ()))

    def as_dict(self) -> dict[str, Any]:
        return {"live": self.live, "standby": self.standby,
                "standby_hosts": list(self.standby_hosts)}

    def describe(self) -> str:
        return f"live={self.live} standby={self.standby}"


@dataclass(frozen=True)
class HostPatched:
    versions: Mapping[str, str]
    """Package -> version installed after the patch."""
    restarted: tuple[str, ...] = ()


@dataclass(frozen=True)
class PatchRecord:
    """The patch step's record (`patching.step_record`): the level from what is installed."""

    side: Side
    patch_level: str
    asked: str
    seconds: float
    hosts: Mapping[str, HostPatched] = field(default_factory=dict)
    changes: Mapping[str, Any] = field(default_factory=dict)
    """`patching.SideChanges.as_dict()`: the packages each host changed."""
    warnings: tuple[str, ...] = ()

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> PatchRecord:
        return cls(
            side=data["side"],
            patch_level=str(data["patch_level"]),
            asked=str(data.get("asked", data["patch_level"])),
            seconds=float(data.get("seconds", 0.0)),
            hosts={h: HostPatched(dict(v.get("versions") or {}), tuple(v.get("restarted") or ()))
                   for h, v in (data.get("hosts") or {}).items()},
            changes=dict(data.get("changes") or {}),
            warnings=tuple(data.get("warnings") or ()),
        )

    def as_dict(self) -> dict[str, Any]:
        return {
            "side": self.side,
            "patch_level": self.patch_level,
            "asked": self.asked,
            "seconds": self.seconds,
            "hosts": {h: {"versions": dict(p.versions), "restarted": list(p.restarted)}
                      for h, p in self.hosts.items()},
            "changes": dict(self.changes),
            "warnings": list(self.warnings),
        }

    def describe(self) -> str:
        summary = self.changes.get("summary")
        tail = f": {summary}" if summary else ""
        return f"patched {self.side} ({self.patch_level}) in {self.seconds}s{tail}"


@dataclass(frozen=True)
class CheckEvidence:
    """One check's result on one host, kept as evidence for campaign reports."""

    host: str
    check: str
    status: str
    evidence: str


@dataclass(frozen=True)
class VerifyRecord:
    side: Side
    summary: str
    checks: int
    results: tuple[CheckEvidence, ...] = ()
    ok: bool = True  # a failed verification raises: a record is always a pass
    generation: int | None = None
    """The side's generation the verdict left: the flip binds to it."""
    level: str | None = None
    """The patch level verified."""

    def as_dict(self) -> dict[str, Any]:
        return {
            "side": self.side,
            "ok": self.ok,
            "summary": self.summary,
            "checks": self.checks,
            "generation": self.generation,
            "level": self.level,
            "results": [{"host": r.host, "check": r.check, "status": r.status,
                         "evidence": r.evidence} for r in self.results],
        }

    def describe(self) -> str:
        return self.summary


@dataclass(frozen=True)
class FlipRecord:
    from_side: Side
    to_side: Side
    recovered: bool = False
    """The router had flipped before the run was interrupted: the kernel completed it."""
    seconds: float | None = None
    confirmed_by: tuple[str, ...] = ()
    old_side_sessions_left: int | None = None
    """Sessions still open on the old side when the drain's deadline passed (None: not
    measured)."""

    def as_dict(self) -> dict[str, Any]:
        if self.recovered:
            return {"from": self.from_side, "to": self.to_side, "recovered": True}
        return {
            "from": self.from_side,
            "to": self.to_side,
            "seconds": self.seconds,
            "confirmed_by": list(self.confirmed_by),
            "old_side_sessions_left": self.old_side_sessions_left,
        }

    def describe(self) -> str:
        return f"flipped {self.from_side} -> {self.to_side}"


@dataclass(frozen=True)
class BakeRecord:
    seconds: float
    requests: int
    failed: int
    url: str | None
    lb_counters: TrafficCounters | None
    """What the load balancer counted for the new side during the bake (None: the router
    does not count)."""

    def as_dict(self) -> dict[str, Any]:
        return {"seconds": self.seconds, "requests": self.requests, "failed": self.failed,
                "url": self.url,
                "lb_counters": None if self.lb_counters is None else self.lb_counters.as_dict()}

    def describe(self) -> str:
        return f"baked {self.seconds}s: {self.requests} requests, {self.failed} failed"


@dataclass(frozen=True)
class CanaryStep:
    """One exposure step of the bake: its verdict, why, and every measurement (each the
    analysis's JSON: queries as sent, both sides' values and volumes, verdict, why)."""

    number: int
    percent: int
    verdict: str
    why: str
    seconds: float
    source: str
    measurements: tuple[dict[str, Any], ...] = ()

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> CanaryStep:
        return cls(int(data["number"]), int(data["percent"]), str(data["verdict"]),
                   str(data.get("why", "")), float(data.get("seconds", 0.0)),
                   str(data.get("source", "")), tuple(data.get("measurements") or ()))

    def as_dict(self) -> dict[str, Any]:
        return {"number": self.number, "percent": self.percent, "verdict": self.verdict,
                "why": self.why, "seconds": self.seconds, "source": self.source,
                "measurements": list(self.measurements)}

    def describe(self) -> str:
        return (f"step {self.number} ({self.percent}%): {self.verdict} after "
                f"{self.seconds:g}s: {self.why}")


def canary_steps(journal: Iterable[JournalEntry]) -> list[CanaryStep]:
    """The bake's exposure steps a run journaled, in order: each ended one as recorded
    (every measurement), a begun one not ended as verdict `running` (its measurements are
    journaled when it ends)."""
    begun: dict[int, Mapping[str, Any]] = {}
    ended: dict[int, CanaryStep] = {}
    for entry in journal:
        if not entry.step.startswith(CANARY_PREFIX):
            continue
        number = int(entry.step[len(CANARY_PREFIX):])
        if entry.phase == "end":
            ended[number] = CanaryStep.from_dict(entry.data)
        elif entry.phase == "begin":
            begun[number] = entry.data
    running = [CanaryStep(n, int(d.get("percent", 0)), "running", "", 0.0, "")
               for n, d in begun.items() if n not in ended]
    return sorted([*ended.values(), *running], key=lambda s: s.number)


@dataclass(frozen=True)
class CanaryRecord:
    """The bake's exposure steps before the flip (none: the service has no `bake.steps`)."""

    steps: tuple[CanaryStep, ...]

    def as_dict(self) -> dict[str, Any]:
        return {"steps": [{k: v for k, v in s.as_dict().items() if k != "measurements"}
                          for s in self.steps]}

    def describe(self) -> str:
        if not self.steps:
            return "no exposure steps (bake.steps not set)"
        return "passed " + ", ".join(f"{s.percent}%" for s in self.steps)


StepRecord = Plan | PatchRecord | VerifyRecord | FlipRecord | BakeRecord | CanaryRecord
