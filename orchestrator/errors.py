"""Typed errors of the core. The CLI maps each to one message and one exit code.

Exit codes (documented in the README and `bluegreen --help`):
  0 done · 1 error · 2 bad usage or bad input · 3 verification failed, no flip ·
  4 rolled back automatically during bake · 5 lock held by another run ·
  6 outside the maintenance window / deferred
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:  # kept import-free: `bluegreen --help` imports this module
    from collections.abc import Iterable
    from pathlib import Path


class BluegreenError(Exception):
    """Base of every error the core raises on purpose. `hint` says how to fix it."""

    exit_code = 1

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        if self.hint:
            return f"{self.message}\n  fix: {self.hint}"
        return self.message


class BadInput(BluegreenError):
    """Config, inventory, campaign file or CLI argument is invalid. Nothing was changed."""

    exit_code = 2


class VerificationFailed(BluegreenError):
    """The standby failed its probes; traffic was not moved."""

    exit_code = 3


class RolledBack(BluegreenError):
    """The new side degraded during bake and traffic went back automatically."""

    exit_code = 4


class LockHeld(BluegreenError):
    """Another run holds the service's lock."""

    exit_code = 5


class OutsideWindow(BluegreenError):
    """The maintenance window is closed: nothing flipped, work deferred."""

    exit_code = 6


class RouterError(BluegreenError):
    """The load balancer refused or could not be reached."""


class FlipIncomplete(RouterError):
    """The routing changed, but persisting or confirming it failed.

    `moved`: new traffic goes to the new side now; `persisted`: the change survives a
    reload/restart of the load balancer; `confirmed`: a real request showed the new side.
    Raised by routers after the change; the traffic kernel records where traffic is."""

    def __init__(
        self,
        message: str,
        *,
        moved: bool = True,
        persisted: bool,
        confirmed: bool = False,
        hint: str | None = None,
    ) -> None:
        super().__init__(message, hint=hint)
        self.moved = moved
        self.persisted = persisted
        self.confirmed = confirmed

    @property
    def problem(self) -> str:
        """What the store records about the flip: "not persisted: ..." / "not confirmed: ..."."""
        what = "not persisted" if not self.persisted else "not confirmed"
        return f"{what}: {self.message}"


class StateMismatch(BluegreenError):
    """The state store and the router disagree about which side is live."""


class StateError(BluegreenError):
    """The state store cannot be read or written."""


class Fenced(StateError):
    """A run's write was refused: a newer epoch of its service's run lock exists (another
    run or process took the lock over), or the run was ended (aborted, abandoned) by
    someone else. Nothing was recorded."""


class LocksLost(Fenced):
    """The database session that held this process's locks ended (a server restart, a
    failover, a partition, `pg_terminate_backend`): its advisory locks (run and traffic)
    ended with it, another process may hold them now. Nothing was recorded, and the
    process must change nothing more (not even undo a flip)."""


class AuditBroken(BluegreenError):
    """The audit chain does not verify."""


class RowForged(AuditBroken):
    """A row that gates traffic (a service, a side, a run) was changed outside bluegreen:
    its seal (a MAC under the audit key) fails. Nothing was done with it."""


class Aborted(BluegreenError):
    """The run was aborted (by `rollback`, `flip` or `campaign abort`) while it ran;
    nothing more was done by it."""


class PatchFailed(BluegreenError):
    """Ansible could not patch the standby."""


class LabError(BluegreenError):
    """The local lab cannot be built, started or stopped."""


def unknown_service(config_file: Path, name: str, known: Iterable[str]) -> BadInput:
    """The error for a service name that bluegreen.yml does not define."""
    import difflib

    names = sorted(known)
    close = difflib.get_close_matches(name, names, n=1)
    guess = f" — did you mean {close[0]!r}?" if close else ""
    return BadInput(
        f"{config_file}: no service {name!r} under `services:`{guess}",
        hint=f"use one of: {', '.join(names)}",
    )
