"""Verify one side of a service with the gate's checks, and record the result per side."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from orchestrator.config import LoadedConfig, PackageSpec
from orchestrator.probes.base import ProbeReport
from orchestrator.sides import Side
from orchestrator.state.base import StateStore
from orchestrator.state.models import AuditEntryInput

DEFAULT_DEADLINE_S = 120.0


@dataclass(frozen=True)
class VerifyOutcome:
    service: str
    side: Side
    ok: bool
    summary: str
    report: ProbeReport


def verify_side(
    config: LoadedConfig,
    store: StateStore,
    service: str,
    side: Side,
    *,
    actor: str,
    packages: Sequence[PackageSpec] = (),
    advisories: Sequence[dict[str, Any]] = (),
    patch_level: str | None = None,
    deadline_s: float = DEFAULT_DEADLINE_S,
    record: bool = True,
) -> VerifyOutcome:
    from orchestrator.inventory import load_fleet
    from orchestrator.probes.engine import run_checks
    from orchestrator.probes.gate import gate_checks, summarize, targets_for

    checks = gate_checks(config, service, packages, advisories)
    hosts = load_fleet(config).service(service).side(side)
    report = run_checks(targets_for(config, hosts), checks, deadline_s)
    summary = summarize(report)
    if record:
        current = store.get_side(service, side)
        level = (
            patch_level if patch_level is not None else (current.patch_level if current else None)
        )
        store.record_verification(
            service,
            side,
            report.ok,
            level,
            summary,
            audit=AuditEntryInput(
                actor=actor,
                command="verify",
                service=service,
                after={"side": side, "ok": report.ok, "summary": summary},
            ),
        )
    return VerifyOutcome(service, side, report.ok, summary, report)
