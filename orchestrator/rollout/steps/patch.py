"""The patch step: Ansible on the standby side only, recorded before it starts (a failed
or killed patch leaves the side `patching`, never a flip target) and after it ends."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from orchestrator.config.models import PackageSpec
from orchestrator.errors import PatchFailed, StateError
from orchestrator.rollout.context import RunContext
from orchestrator.rollout.records import PatchRecord
from orchestrator.state.models import AuditEntryInput, SideState


def patch_level(packages: Sequence[PackageSpec], security_updates: bool) -> str:
    if packages:
        return ",".join(sorted(str(p) for p in packages))
    return "security-updates" if security_updates else "none"


class Patch:
    name = "patch"

    def run(self, ctx: RunContext) -> PatchRecord:
        from orchestrator.patching import step_record

        service, standby, level = ctx.service, ctx.standing_plan.standby, ctx.level
        # Recorded before Ansible touches the side: a failed or killed patch leaves it
        # `patching`, which no flip (nor rollback) may target until patched and verified,
        # unless the run proves it changed no host (then the side gets back `prior`).
        prior = ctx.store.get_side(service, standby)
        began = ctx.store.begin_patch(service, standby, level, audit=self._audit(
            ctx, "rollout.patch.begin", {"side": standby, "patch_level": level}))

        def progress(p: Any) -> None:
            ctx.emit("patch", "progress", f"{p.host}: {p.task} {p.status}",
                     {"host": p.host, "task": p.task, "status": p.status})

        patched = ctx.tools.patch(ctx.config, service, standby, ctx.packages or None,
                                  on_event=progress, cancel=ctx.is_aborted, fleet=ctx.fleet)
        if not patched.ok:
            bad = patched.result.failures() or [patched.result.message or patched.result.status]
            raise PatchFailed(
                f"{service}: patching {standby} failed: " + "; ".join(bad)
                + f" ({patched.changes.summary()})" + self._untouched(ctx, prior, began, patched),
                hint=f"fix the host or the package (`bluegreen doctor {service}` checks the "
                f"hosts), then start the rollout again: `bluegreen rollout {service}` (a "
                "failed run is not resumed; the patch is idempotent)",
            )
        for warning in patched.warnings:
            ctx.emit("patch", "warning", f"warning: {warning}")
        record = PatchRecord.from_dict(step_record(patched, standby, level))
        # refused (SideChanged) when the side changed during the patch (e.g. quarantined):
        # the run fails, the side keeps its new state
        ctx.store.record_patch(service, standby, record.patch_level,
                               expected_generation=began.generation, audit=self._audit(
            ctx, "rollout.patch", {"side": record.side, "patch_level": record.patch_level,
                                   "asked": record.asked, "changes": dict(record.changes)}))
        ctx.level = record.patch_level  # what is installed, not what was asked
        return record

    def _untouched(self, ctx: RunContext, prior: SideState | None, began: SideState,
                   patched: Any) -> str:
        """When the failed run changed no host of the side (and nothing moved the side
        between the read of `prior` and `begin_patch`): the side's state before the patch,
        restored and audited; the text says so. Else the side stays `patching`."""
        from orchestrator.patching.untouched import why_untouched

        stays = f"; {began.side} stays `patching` (a host may have changed)"
        if ctx.fleet is None:
            return stays
        hosts = [h.name for h in ctx.fleet.service(ctx.service).side(began.side)]
        why = why_untouched(patched, hosts)
        if why is None or began.generation != (prior.generation if prior else 0) + 1:
            return stays
        try:
            restored = ctx.store.restore_untouched(
                ctx.service, began.side, prior, f"the patch changed no host: {why}",
                expected_generation=began.generation, audit=self._audit(
                    ctx, "rollout.patch.untouched", {"side": began.side, "why": why,
                                                     "state": prior.state if prior else None}))
        except StateError as exc:  # e.g. quarantined meanwhile: that state stands
            return f"; {began.side} was not restored: {exc.message}"
        return (f"; no host of {began.side} was changed ({why}): it is {restored.state} "
                "again, as before the patch")

    def resume(self, ctx: RunContext, ended: Mapping[str, Any]) -> None:
        ctx.level = PatchRecord.from_dict(ended).patch_level

    @staticmethod
    def _audit(ctx: RunContext, command: str, after: dict[str, Any]) -> AuditEntryInput:
        return AuditEntryInput(actor=ctx.actor, command=command, service=ctx.service,
                               reason=f"run {ctx.run_id}", after=after)
