"""The typed result of `bluegreen doctor`: checks in the order they ran."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from orchestrator.routers.base import Check

__all__ = ["Check", "Report", "first_failure"]


@dataclass
class Report:
    checks: list[Check] = field(default_factory=list)

    @property
    def failures(self) -> list[Check]:
        return [c for c in self.checks if c.failed]

    @property
    def ok(self) -> bool:
        """No check failed (an unknown one is not a failure)."""
        return not self.failures

    def as_dict(self) -> dict[str, Any]:
        return {"ok": self.ok, "failed": len(self.failures),
                "unknown": sum(1 for c in self.checks if c.ok is None),
                "checks": [c.as_dict() for c in self.checks]}


def first_failure(checks: list[Check]) -> str:
    """The failed checks in one message: the first with its detail, the others named."""
    failed = [c for c in checks if c.failed]
    head = f"{failed[0].name}: {failed[0].detail}"
    more = f" (and {len(failed) - 1} more: {', '.join(c.name for c in failed[1:])})" \
        if len(failed) > 1 else ""
    return head + more
