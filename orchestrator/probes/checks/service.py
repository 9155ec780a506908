"""`service`: a systemd unit is running and enabled (or, as configured, not).

In bluegreen.yml (one item of a service's `checks:`)::

    - {kind: service, name: demo-web}
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, Literal

from orchestrator.probes.base import ProbeTarget
from orchestrator.probes.checks.base import BaseCheck, Outcome


class ServiceCheck(BaseCheck):
    kind: Literal["service"]
    name: str
    running: bool = True
    enabled: bool = True

    def primary_id(self) -> str:
        return self._single_id(self.name)

    def outcomes(self, host: Any, target: ProbeTarget) -> Iterable[Outcome]:
        svc = host.service(self.name)
        running = bool(svc.is_running)
        enabled = bool(svc.is_enabled)
        problems = []
        if running != self.running:
            problems.append("running" if running else "not running")
        if enabled != self.enabled:
            problems.append("enabled" if enabled else "not enabled")
        state = (
            f"{'running' if running else 'not running'}, {'enabled' if enabled else 'not enabled'}"
        )
        if problems:
            yield self.primary_id(), "fail", f"unit {self.name} is {state}"
        else:
            yield self.primary_id(), "pass", f"unit {self.name} is {state}"
