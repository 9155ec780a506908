"""Rebuild instead of repair: re-image the standby side, then the full gate.

`bluegreen rebuild SERVICE --side SIDE` runs the service's `patch.rebuild_playbook` (plain
Ansible, `target` = the side's inventory group: re-image, redeploy, or in the lab a fresh
root through the lab's own control) on a side that is not live, under the service's run
lock, recorded as a patch (`patching(rebuild-...)` before Ansible runs, `patched` after),
installs the live side's versions of the service's patch packages (the patch playbook:
an image older than the live side comes up to it), then runs the whole verification gate. Only a passing gate makes the side
`verified`, which is how a `quarantined` side (or a stuck, failed or `failed_live` one)
becomes a flip target again; a failed playbook leaves it `patching`, a failed gate
`verify_failed`: neither takes traffic.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from orchestrator.config.loaded import LoadedConfig
from orchestrator.errors import BadInput, PatchFailed, StateError
from orchestrator.sides import Side
from orchestrator.state.base import StateStore
from orchestrator.state.models import AuditEntryInput

if TYPE_CHECKING:
    from orchestrator.rollout.steps.verify import VerifyOutcome


@dataclass(frozen=True)
class RebuildOutcome:
    service: str
    side: Side
    playbook: Path
    level: str
    playbook_seconds: float
    verify: VerifyOutcome
    live_versions: dict[str, str] = dataclasses.field(default_factory=dict)
    """The live side's versions of the patch packages, installed after the re-image."""

    @property
    def ok(self) -> bool:
        return self.verify.ok

    def as_dict(self) -> dict[str, Any]:
        return {"service": self.service, "side": self.side, "playbook": str(self.playbook),
                "level": self.level, "playbook_seconds": round(self.playbook_seconds, 3),
                "live_versions": self.live_versions,
                "ok": self.ok, "summary": self.verify.summary,
                "results": [{"host": r.host, "check": r.check, "status": r.status,
                             "evidence": r.evidence} for r in self.verify.report.results]}


def rebuild_playbook(config: LoadedConfig, service: str) -> Path:
    """The service's rebuild playbook; BadInput when none is set or it does not exist."""
    name = config.service(service).patch.rebuild_playbook
    if name is None:
        raise BadInput(
            f"{config.path}: services.{service}.patch.rebuild_playbook is not set",
            hint="point it at a playbook that re-images the hosts of `target` (the lab's: "
            "playbooks/lab-rebuild.yml)",
        )
    return config.resolve_playbook(name, field=f"services.{service}.patch.rebuild_playbook")


def _refuse_live(config: LoadedConfig, service: str, side: Side) -> None:
    """The router is the truth about the live side (the store may never have seen it)."""
    from orchestrator.traffic import open_router

    router = open_router(config)
    try:
        live = router.live(service)
    finally:
        router.close()
    if live == side:
        raise StateError(
            f"{service}: refusing to rebuild {side}: it is the live side",
            hint=f"move traffic off it first: `bluegreen quarantine {service} --side {side} "
            "--reason TEXT` (flips to the other side if that one is verified)",
        )


def rebuild_side(config: LoadedConfig, store: StateStore, service: str, side: Side, *,
                 actor: str, reason: str, run_id: str) -> RebuildOutcome:
    """Re-image `side` with the rebuild playbook, then verify it (recorded). Raises
    BadInput (no playbook), LockHeld, StateError (the side is live at the router, or a
    flip is pending: `begin_patch` refuses), RouterError, PatchFailed (the playbook failed: the side stays
    `patching`)."""
    from orchestrator.patching.runner import prepare, run_playbook
    from orchestrator.rollout.steps.verify import verify_side

    playbook = rebuild_playbook(config, service)
    if not reason.strip():
        raise BadInput("--reason is empty", hint="say why, e.g. --reason INC-4711")
    run = dataclasses.replace(prepare(config, service, side, None), playbook=playbook)
    level = "rebuild-" + datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    store.acquire_lock(service, run_id)
    try:
        _refuse_live(config, service, side)
        began = store.begin_patch(service, side, level, audit=AuditEntryInput(
            actor=actor, command="rebuild.begin", service=service, reason=reason,
            after={"side": side, "playbook": str(playbook), "level": level}))
        result = run_playbook(run)
        if not result.ok:
            failures = "; ".join(result.failures()) or result.message or result.status
            store.audit_append(AuditEntryInput(
                actor=actor, command="rebuild", service=service, reason=reason,
                result="failed", after={"side": side, "level": level, "error": failures}))
            raise PatchFailed(
                f"{service} {side}: the rebuild playbook failed ({failures}); the side stays "
                "patching: it takes no traffic",
                hint=f"fix the cause and run `bluegreen rebuild {service} --side {side}` again")
        pinned = _to_live_versions(config, service, side)
        # refused (SideChanged) when the side changed meanwhile, e.g. quarantined again
        state = store.record_patch(
            service, side, level, expected_generation=began.generation,
            audit=AuditEntryInput(
                actor=actor, command="rebuild", service=service, reason=reason,
                after={"side": side, "level": level,
                       "playbook_seconds": round(result.seconds, 3), "live_versions": pinned}))
        outcome = verify_side(config, store, service, side, actor=actor, patch_level=level,
                              expected_generation=state.generation)
    finally:
        store.release_lock(service, run_id)
    return RebuildOutcome(service, side, playbook, level, result.seconds, outcome, pinned)


def live_versions(config: LoadedConfig, service: str, side: Side) -> dict[str, str]:
    """The versions the live side (the other side) runs of the service's patch packages,
    read from its hosts (one command each). PatchFailed when a host cannot be read or
    the live hosts disagree (there is no one version to go back to)."""
    from orchestrator.inventory import load_fleet
    from orchestrator.probes.drift import read_fingerprints
    from orchestrator.probes.gate import targets_for
    from orchestrator.sides import other_side

    names = [p.name for p in config.service(service).patch.packages]
    if not names:
        return {}  # security_updates: the rebuild playbook's image decides
    live = targets_for(config, load_fleet(config).service(service).side(other_side(side)))
    fps, errors = read_fingerprints(live, [], security=False)
    if errors:
        why = "; ".join(f"{h}: {e}" for h, e in sorted(errors.items()))
        raise PatchFailed(f"{service}: cannot read the live side's versions: {why}",
                          hint="the rebuilt side stays patching; fix the live side's hosts' "
                          "reachability and rebuild again")
    out: dict[str, str] = {}
    for name in names:
        seen = {fp.get("package", name) for fp in fps.values()}
        if len(seen) > 1:
            raise PatchFailed(f"{service}: the live side's hosts run different versions of "
                              f"{name}: {sorted(str(v) for v in seen)}",
                              hint="make the live side consistent first (`bluegreen drift`)")
        version = seen.pop() if seen else None
        if version is not None:
            out[name] = version
    return out


def _to_live_versions(config: LoadedConfig, service: str, side: Side) -> dict[str, str]:
    """After the re-image: install the live side's versions of the patch packages with
    the patch playbook (an image older than the live side is brought up to it; a broken
    version apt would not downgrade is gone with the old root)."""
    from orchestrator.config.models import PackageSpec
    from orchestrator.patching.step import patch_side

    versions = live_versions(config, service, side)
    if not versions:
        return {}
    done = patch_side(config, service, side,
                      [PackageSpec(name=n, version=v) for n, v in sorted(versions.items())])
    if not done.ok:
        failures = "; ".join(done.result.failures()) or done.result.message or "failed"
        raise PatchFailed(f"{service} {side}: rebuilt, but installing the live side's versions "
                          f"failed ({failures}); the side stays patching",
                          hint=f"run `bluegreen rebuild {service} --side {side}` again")
    return versions
