"""The side state machine as data: (state, event) -> next state, who may cause each event,
and the guards that need the service row. Pure (no I/O): the store applies it in its one
side-writing function (`orchestrator.state.sql.sides`), as a compare-and-set on the side's
generation; the CLI, the README and the tests read the same table.

A state missing from an event's `moves` and `keeps` refuses the event (TransitionRefused,
naming state, event and fix). `keeps`: the event is recorded (e.g. a verification's
result) but the state stays, with its reason and since-when. Only a patch begun after a
quarantine (then a passing verification) leads out of `quarantined` and `failed_live`.
`patch_untouched` is the one event whose target is not in the table: it gives the side back
the state it had before its `patch_begun` (the caller passes it), because no host changed.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal, get_args

from orchestrator.errors import StateError
from orchestrator.sides import Side
from orchestrator.state.models import (
    EXPOSURE_NOT_PERSISTED,
    SIDE_STATES,
    ServiceState,
    SideStateName,
)

Event = Literal[
    "patch_begun", "patch_done", "verified_ok", "verified_failed", "rolled_back_from",
    "quarantined", "reimaged", "patch_untouched",
]
EVENTS: tuple[Event, ...] = get_args(Event)

_ALL: frozenset[SideStateName] = frozenset(SIDE_STATES)
_VERIFIABLE: frozenset[SideStateName] = frozenset(
    {"untouched", "patched", "verified", "verify_failed"})
"""A verification moves these; `patching`, `failed_live` and `quarantined` need a patch."""


class TransitionRefused(StateError):
    """The side's state does not allow the event (or its guard refused); nothing changed."""


class SideChanged(StateError):
    """The side changed (its generation moved) since the caller read it; nothing changed."""


@dataclass(frozen=True)
class Rule:
    """One event: from which states it leads where, and who may cause it."""

    who: str
    moves: dict[SideStateName, SideStateName]
    keeps: frozenset[SideStateName] = field(default_factory=frozenset)
    fix: str = ""
    restores: bool = False
    """The move leads back to the state the caller names (the one before the patch began);
    `moves` gives the default when the side had no row before."""


TABLE: dict[Event, Rule] = {
    "patch_begun": Rule(
        "a rollout's patch step, `rebuild`, `campaign converge`: the standby only (never the "
        "live side, nor a pending flip's target, nor while the live side's flip is not "
        "persisted)",
        dict.fromkeys(_ALL, "patching"),
    ),
    "patch_done": Rule(
        "the run that began the patch, at the generation its `patch_begun` returned",
        {"patching": "patched"},
        fix="begin a patch first (a rollout or `rebuild`); a side that changed during the "
            "patch keeps its new state",
    ),
    "verified_ok": Rule(
        "`verify`, a rollout's verify step, `rebuild`'s gate (at the generation read when "
        "it began)",
        dict.fromkeys(_VERIFIABLE, "verified"),
        keeps=_ALL - _VERIFIABLE,
    ),
    "verified_failed": Rule(
        "`verify`, a rollout's verify step, `rebuild`'s gate (at the generation read when "
        "it began)",
        dict.fromkeys(_VERIFIABLE, "verify_failed"),
        keeps=_ALL - _VERIFIABLE,
    ),
    "rolled_back_from": Rule(
        "the kernel's record of a rollback (`rollback`, the bake's automatic rollback), "
        "for the side traffic left",
        dict.fromkeys(_ALL - {"quarantined"}, "failed_live"),
        keeps=frozenset({"quarantined"}),
    ),
    "quarantined": Rule(
        "`quarantine`, `watch --quarantine`: under the traffic lock; a live side only in the "
        "record of the flip that takes traffic away from it",
        dict.fromkeys(_ALL - {"quarantined"}, "quarantined"),
        keeps=frozenset({"quarantined"}),
    ),
    "patch_untouched": Rule(
        "the run that began the patch, at the generation its `patch_begun` returned, when "
        "the playbook failed before changing any host (`orchestrator.patching.untouched`): "
        "the side gets back the state, level, host fingerprints and since-when it had",
        {"patching": "untouched"},
        fix="only a side still `patching` since the run's own `patch_begun` is restored",
        restores=True,
    ),
    "reimaged": Rule(
        "`lab reset` (the hosts were re-imaged): forgets patch, verification and host "
        "fingerprints",
        dict.fromkeys(_ALL, "untouched"),
    ),
}


@dataclass(frozen=True)
class Step:
    """Where an event leads. `moved` False: recorded, but the state (and since) is kept."""

    state: SideStateName
    moved: bool


def step(service: str, side: Side, state: SideStateName, event: Event,
         svc: ServiceState | None, *, restore: SideStateName | None = None) -> Step:
    """The next state of `side` (now `state`) on `event`, given its service row `svc`
    (read in the same transaction). TransitionRefused when the table or a guard says no.
    `restore`: the state a `restores` event leads back to (refused for any other event)."""
    rule = TABLE[event]
    if restore is not None and not rule.restores:
        raise TransitionRefused(f"{service}: `{event}` does not restore a state; nothing "
                                "was recorded")
    _guard(service, side, event, svc)
    if state in rule.moves:
        return Step(restore or rule.moves[state], True)
    if state in rule.keeps:
        return Step(state, False)
    allowed = ", ".join(sorted(rule.moves))
    raise TransitionRefused(
        f"{service}: {side} is {state}: `{event}` is not a transition from it (only from "
        f"{allowed}); nothing was recorded",
        hint=rule.fix or "look at `bluegreen status`",
    )


def _guard(service: str, side: Side, event: Event, svc: ServiceState | None) -> None:
    live = svc is not None and svc.live_side == side
    if event == "quarantined" and live:
        raise TransitionRefused(
            f"{service}: {side} is live: it is quarantined only in the record of the flip "
            "that takes traffic away from it",
            hint=f"`bluegreen quarantine {service} --side {side} --reason ...` moves traffic "
            "first",
        )
    if event == "rolled_back_from" and live:
        raise TransitionRefused(
            f"{service}: {side} is still live: a rollback marks the side traffic left")
    if event == "patch_begun":
        _refuse_patch(service, side, svc)


def _refuse_patch(service: str, side: Side, svc: ServiceState | None) -> None:
    """TransitionRefused when `side` may not be patched now."""
    if svc is None:
        return
    if svc.live_side == side:
        raise TransitionRefused(
            f"{service}: refusing to patch {side}: the state store records it as the "
            "live side",
            hint="only the standby is patched; check `bluegreen status`",
        )
    if svc.exposed_side == side:
        raise TransitionRefused(
            f"{service}: refusing to patch {side}: it takes a share of the traffic "
            f"(exposed at {svc.exposure_percent} %{', preview' if not svc.exposure_percent else ''})",
            hint=f"roll the exposure back first: `bluegreen rollback {service} --reason ...`",
        )
    if (svc.flip_problem or "").startswith(EXPOSURE_NOT_PERSISTED):
        raise TransitionRefused(
            f"{service}: refusing to patch {side}: {svc.flip_problem}; a reload of the load "
            "balancer could send it a share of the traffic again",
            hint=f"persist it first: any traffic command (`bluegreen flip {service} --to "
            f"{svc.live_side} --reason ...`) writes the exposure maps again",
        )
    if svc.pending_flip is not None:
        pending = svc.pending_flip
        raise TransitionRefused(
            f"{service}: refusing to patch {side}: a flip {pending.from_side} -> "
            f"{pending.to_side} ({pending.command}) is in progress",
            hint="retry when it is done; `bluegreen status` shows it",
        )
    if (svc.flip_problem or "").startswith("not persisted"):
        # the map on disk still sends traffic to the other side: a reload of the
        # load balancer during the patch would put traffic on the hosts Ansible changes
        raise TransitionRefused(
            f"{service}: refusing to patch {side}: the flip to {svc.live_side} is not "
            f"persisted at the load balancer ({svc.flip_problem}); a reload would send "
            f"traffic back to {side}",
            hint=f"persist it first: `bluegreen flip {service} --to {svc.live_side} "
            "--reason ...`",
        )


def changed(service: str, side: Side, expected: int, generation: int, state: SideStateName,
            reason: str | None, *, during: str, hint: str | None = None) -> SideChanged:
    """The error for a write whose caller read `side` at generation `expected` (`during`:
    what it did meanwhile, e.g. "the verification")."""
    why = f" ({reason})" if reason else ""
    return SideChanged(
        f"{service}: {side} changed during {during}: generation {expected} -> {generation}, "
        f"now {state}{why}; not recorded",
        hint=hint or f"look at `bluegreen status {service}`; the change that came first stands",
    )
