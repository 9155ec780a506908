"""Converge: after the retention period, patch and verify a service's old side too, so
both sides are mirror images again (same package versions: the drift check).

Never touches the live side: the side converged must be the standby, and the live side
must still be the one the campaign flipped to (a rollback since then means the old side is
live again, and converging would patch live traffic: refused).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

from orchestrator.campaign.events import CampaignResult, now_text
from orchestrator.campaign.journal import Journal, Step
from orchestrator.campaign.model import Campaign, advisories_for, packages_for
from orchestrator.config.loaded import LoadedConfig
from orchestrator.inventory import Fleet
from orchestrator.routers.base import Router
from orchestrator.sides import other_side
from orchestrator.state.base import StateStore
from orchestrator.state.models import AuditEntryInput, Run

if TYPE_CHECKING:
    from orchestrator.campaign.context import RunContext


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


def converge_due(
    ctx: RunContext, run: Run, campaign: Campaign, waves: list[list[str]], result: CampaignResult
) -> None:
    """After all waves (`retention.converge`): the old side of every service whose flip is
    older than `retention.keep` converged (its `converge:NAME` step); the run ends failed
    at the first converge that fails, or "converge_pending" when some are not due yet."""
    journal = Journal(ctx.store, run.run_id)
    ends = journal.ended()
    pending: list[str] = []
    for svc in (s for w in waves for s in w):
        step = Step.converge(svc)
        data = ends.get(Step.of_service(svc), {})
        if step in ends or data.get("status") != "done":
            continue
        flipped = datetime.fromisoformat(str(data["at"]))
        due = flipped + campaign.retention.keep
        if due > ctx.clock():
            pending.append(f"{svc} after {due.isoformat()}")
            continue
        ctx.check_not_aborted(run.run_id)
        ctx.emit("service", f"{svc}: converge the old side", {"service": svc})
        if step not in journal.begun():
            journal.begin(step, {"at": now_text()})
        out = converge_service(
            ctx.config,
            ctx.store,
            ctx.router,
            svc,
            campaign,
            run.run_id,
            ctx.actor,
            expected_live=str(data.get("to")),
            fleet=ctx.fleet,
        )
        journal.end(step, out.as_dict())
        ctx.emit("service", f"{svc}: {out.message}", {"service": svc})
        if not out.ok:
            return ctx.fail(run.run_id, f"{svc}: converge failed: {out.message}", 3, result)
    if pending:
        msg = "patched; converge pending: " + "; ".join(pending)
        ctx.store.finish_run(run.run_id, "deferred", msg)
        result.status, result.message, result.exit_code = "converge_pending", msg, 0
    return None
