"""What a patch run returns: per-host results, progress events, planned changes."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class PatchProgress:
    """One step of a run: a task started (host None) or a task finished on a host.

    status: "started", "ok", "changed", "failed", "unreachable", "skipped".
    """

    host: str | None
    task: str | None
    status: str
    message: str | None = None


@dataclass(frozen=True)
class PackageChange:
    """A package a check-mode run would install or upgrade (`current` None: not installed)."""

    name: str
    current: str | None
    new: str


@dataclass
class HostPatchResult:
    """What happened on one host."""

    ok: bool = False
    changed: bool = False
    failed_task: str | None = None
    message: str | None = None
    unreachable: bool = False
    versions: dict[str, str] = field(default_factory=dict)
    restarted: list[str] = field(default_factory=list)
    #: check mode: the packages the run would change on this host
    would_change: dict[str, PackageChange] = field(default_factory=dict)
    #: False when the play never reached the host (e.g. it stopped after an earlier batch)
    reached: bool = False
    #: a task ended ok on the host (also a failure the play ignored): it ran something
    ran: bool = False
    #: its failure was sudo refusing before the module started (a password required, an
    #: unknown become user): the task itself never ran
    escalation_refused: bool = False


@dataclass
class PatchResult:
    """The whole run. `status`: successful, failed, timeout, canceled."""

    ok: bool
    rc: int
    status: str
    hosts: dict[str, HostPatchResult]
    seconds: float
    service: str = ""
    side: str = ""
    check_mode: bool = False
    message: str | None = None

    def failures(self) -> list[str]:
        """One line per host that did not patch cleanly."""
        return [
            f"{name}: {h.message or 'failed'}" for name, h in sorted(self.hosts.items()) if not h.ok
        ]
