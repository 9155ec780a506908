"""The flip gate's rules (pure: no store, no router)."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime

import pytest

from orchestrator.state import SideState
from orchestrator.traffic.gate import refusal

T0 = datetime(2026, 11, 7, 22, tzinfo=UTC)
GOOD = SideState(service="web", side="green", patch_level="v2", patched_at=T0,
                 verified_at=T0, verification_ok=True, verified_patch_level="v2",
                 state="verified", state_since=T0)


def test_verified_at_its_level_is_a_target() -> None:
    assert refusal("web", "green", GOOD, rollback_to=None) is None


def test_verified_at_another_level_is_not() -> None:
    stale = dataclasses.replace(GOOD, patch_level="v3")
    found = refusal("web", "green", stale, rollback_to=None)
    assert found is not None and "v2" in found.message and "v3" in found.message
    assert "bluegreen verify web --side green" in found.hint


@pytest.mark.parametrize("state, ok", [
    ("untouched", True), ("verified", True), ("patching", False), ("patched", False),
    ("verify_failed", False), ("failed_live", False), ("quarantined", False),
])
def test_the_rollback_side_may_be_untouched_or_verified(state: str, ok: bool) -> None:
    side = dataclasses.replace(GOOD, state=state)  # type: ignore[arg-type]
    assert (refusal("web", "green", side, rollback_to="green") is None) is ok
    if state == "untouched":  # ... but an untouched side that is not the rollback side
        assert refusal("web", "green", side, rollback_to="blue") is not None
        assert refusal("web", "green", None, rollback_to="green") is None


def test_a_refusal_names_state_level_since_and_the_fixes() -> None:
    patching = dataclasses.replace(GOOD, state="patching", state_reason="run web-1")
    found = refusal("web", "green", patching, rollback_to=None)
    assert found is not None
    for part in ("patching", "v2", "2026-11-07 22:00:00 UTC", "run web-1"):
        assert part in found.message, part
    assert "--force --reason" in found.hint and "rollout" in found.hint
