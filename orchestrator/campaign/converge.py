"""Converge: after the retention period, patch and verify a service's old side too, so
both sides are mirror images again (same package versions: the drift check).

Never touches the live side: the side converged must be the standby, and the live side
must still be the one the campaign flipped to (a rollback since then means the old side is
live again, and converging would patch live traffic: refused).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from orchestrator.campaign.model import Campaign, advisories_for, packages_for
from orchestrator.config.loaded import LoadedConfig
from orchestrator.inventory import Fleet
from orchestrator.routers.base import Router
from orchestrator.sides import other_side
from orchestrator.state.base import StateStore
from orchestrator.state.models import AuditEntryInput


@dataclass(frozen=True)
class ConvergeResult:
    """What a converge did; `as_dict()` is the journal data of its `converge:NAME` step."""

    ok: bool
    message: str
    side: str | None = None
    """None when it was refused before choosing a side."""
    patch_level: str | None = None
    hosts: dict[str, dict[str, Any]] = field(default_factory=dict)
    verify: str | None = None
    results: list[dict[str, Any]] = field(default_factory=list)
    drift: list[str] = field(default_factory=list)
    verified: bool = False
    """True once the side was patched and verification ran (the full record is stored)."""

    def as_dict(self) -> dict[str, Any]:
        doc: dict[str, Any] = {"ok": self.ok}
        if self.side is not None:
            doc["side"] = self.side
        if self.verified:
            doc.update(
                patch_level=self.patch_level,
                hosts=self.hosts,
                verify=self.verify,
                results=self.results,
                drift=self.drift,
            )
        doc["message"] = self.message
        return doc


def converge_service(
    config: LoadedConfig,
    store: StateStore,
    router: Router,
    service: str,
    campaign: Campaign,
    run_id: str,
    actor: str,
    *,
    expected_live: str,
    fleet: Fleet | None = None,
) -> ConvergeResult:
    """Patch + verify the standby of `service`. `fleet`: the command's parse of the
    inventory (None: parse it)."""
    from orchestrator.patching import patch_side, step_record
    from orchestrator.rollout.steps.patch import patch_level
    from orchestrator.rollout.steps.verify import verify_side

    live = router.live(service)
    if live != expected_live:
        return ConvergeResult(
            ok=False,
            message=f"{live} is live, not {expected_live} (rolled back since?): the old "
            "side is live, converge refused",
        )
    side = other_side(live)
    packages = packages_for(campaign, service)
    level = patch_level(packages, False)
    store.acquire_lock(service, run_id)
    try:
        began = store.begin_patch(  # a failed or killed converge leaves the side `patching`
            service,
            side,
            level,
            audit=AuditEntryInput(
                actor=actor,
                command="campaign.converge.patch.begin",
                service=service,
                reason=f"campaign run {run_id}",
                after={"side": side, "patch_level": level},
            ),
        )
        patched = patch_side(config, service, side, packages, fleet=fleet)
        if not patched.ok:
            failures = patched.result.failures()
            return ConvergeResult(ok=False, side=side, message="; ".join(failures))
        step = step_record(patched, side, level)
        level = step["patch_level"]  # what is installed, not what was asked
        versions = {h: d["versions"] for h, d in step["hosts"].items()}
        store.record_patch(  # refused when the side changed meanwhile (e.g. quarantined)
            service,
            side,
            level,
            expected_generation=began.generation,
            audit=AuditEntryInput(
                actor=actor,
                command="campaign.converge.patch",
                service=service,
                reason=f"campaign run {run_id}",
                after={"side": side, "versions": versions, "changes": step["changes"]},
            ),
        )
        outcome = verify_side(
            config,
            store,
            service,
            side,
            actor=actor,
            packages=packages,
            advisories=[a.model_dump(mode="json") for a in advisories_for(campaign, service)],
            patch_level=level,
            fleet=fleet,
        )
        wanted = {p.name: p.version for p in packages}
        drift = sorted(
            f"{h} {pkg}={have.get(pkg)}"
            for h, have in versions.items()
            for pkg, ver in wanted.items()
            if have.get(pkg) != ver
        )
        ok = outcome.ok and not drift
        return ConvergeResult(
            ok=ok,
            side=side,
            patch_level=level,
            hosts={h: {"versions": v} for h, v in versions.items()},
            verify=outcome.summary,
            results=[
                {"host": r.host, "check": r.check, "status": r.status, "evidence": r.evidence[:300]}
                for r in outcome.report.results
            ],
            drift=drift,
            verified=True,
            message=(
                f"{side} converged ({level}); both sides match"
                if ok
                else f"{side}: {outcome.summary}; drift: {', '.join(drift) or 'none'}"
            ),
        )
    finally:
        lock = store.get_lock(service)
        if lock is not None and lock.run_id == run_id:
            store.release_lock(service, run_id)
