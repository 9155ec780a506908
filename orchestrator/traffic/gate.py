"""May this side take traffic? Pure rules over the stored side state (no I/O).

A flip may target a side only if
- it is `verified` and its verification checked the level it runs now; or
- it is the service's rollback side (`rollback_to`: live before the last forward flip) and
  it is `verified` or `untouched` (untouched since: any patch would have made it
  `patching`).
Everything else (`patching`, `patched`, `verify_failed`, `failed_live`, `quarantined`, an
untouched side that is not the rollback side) is refused with the state, its level, since
when, why, and the fix. `--force --reason` skips these rules (the caller audits it).
The kernel adds what needs I/O: a server UP at the router, and (except for rollback) the
hosts still being the ones that were verified.
"""

from __future__ import annotations

from dataclasses import dataclass

from orchestrator.sides import Side
from orchestrator.state.models import SideState


@dataclass(frozen=True)
class Refusal:
    message: str
    hint: str


def refusal(
    service: str, target: Side, side: SideState | None, *, rollback_to: Side | None,
    run_in_flight: str | None = None,
) -> Refusal | None:
    """None when `target` may take traffic, else why not and how to fix it.
    `run_in_flight`: the service's unfinished run (the refusal aborts nothing: the hint
    says to let it finish; without one, `resume` cannot work and is not hinted)."""
    state = side.state if side is not None else "untouched"
    if side is not None and side.verified_after_patch:
        return None
    if target == rollback_to and state in ("verified", "untouched"):
        return None
    level = (side.patch_level if side else None) or "no patch recorded"
    since = (
        side.state_since.strftime("%Y-%m-%d %H:%M:%S UTC")
        if side is not None and side.state_since is not None
        else "unknown"
    )
    why = f" ({side.state_reason})" if side is not None and side.state_reason else ""
    head = f"{service}: refusing to send traffic to {target}: it is {state}"
    override = (
        f"or, knowingly, `bluegreen flip {service} --to {target} --force --reason TEXT`"
    )
    verify = f"`bluegreen verify {service} --side {target}`"
    if state == "patching":
        return Refusal(
            f"{head} ({level}) since {since}: a patch began on it and did not finish{why}",
            (f"run {run_in_flight} is not finished (it was not aborted): let it finish, or "
             f"`bluegreen resume` it if its process died; {override}")
            if run_in_flight is not None
            else f"run a new rollout (it patches and verifies {target}); {override}",
        )
    if state == "patched":
        return Refusal(
            f"{head} ({level}) since {since} and was not verified at that level",
            f"run {verify}; {override}",
        )
    if state == "verify_failed":
        return Refusal(
            f"{head} since {since}: its last verification failed{why}",
            f"fix the side and run {verify}, or run a new rollout; {override}",
        )
    if state == "failed_live":
        return Refusal(
            f"{head} since {since}: traffic was taken away from it by a rollback{why}",
            f"patch and verify it again with a new rollout; {override}",
        )
    if state == "quarantined":
        return Refusal(
            f"{head} since {since}{why}",
            f"lift the quarantine first; {override}",
        )
    if state == "verified":  # verified, but at another level than it runs now
        return Refusal(
            f"{head} at {side.verified_patch_level if side else None}, but it now runs "
            f"{level}",
            f"run {verify}; {override}",
        )
    return Refusal(
        f"{head}: bluegreen never verified it, and it is not the side that was live before "
        "the last flip",
        f"run {verify}; {override}",
    )


def stale_verification(
    service: str, target: Side, side: SideState | None, verified_generation: int | None
) -> Refusal | None:
    """None when the flip relies on no particular verification, or `target` is still at the
    generation that verification left; else why not (it was re-patched, re-imaged,
    quarantined or verified again since: the flip would go to a side nobody verified for
    it)."""
    generation = side.generation if side is not None else 0
    if verified_generation is None or generation == verified_generation:
        return None
    state = side.state if side is not None else "untouched"
    level = (side.patch_level if side is not None else None) or "no patch recorded"
    why = f" ({side.state_reason})" if side is not None and side.state_reason else ""
    return Refusal(
        f"{service}: refusing to send traffic to {target}: it changed since the verification "
        f"this flip relies on (generation {verified_generation} -> {generation}; now {state}, "
        f"{level}{why})",
        f"verify it again (`bluegreen verify {service} --side {target}`) and run a new "
        f"rollout; the verified patch is no longer what {target} runs",
    )
