"""The side state machine: the whole table, its guards, and that nothing but its one
function writes the sides table."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from pathlib import Path

import pytest

from orchestrator.state.models import SIDE_STATES, PendingFlip, ServiceState, SideStateName
from orchestrator.state.transitions import (
    EVENTS,
    TABLE,
    Event,
    SideChanged,
    Step,
    TransitionRefused,
    changed,
    step,
)

T0 = datetime(2026, 12, 7, 12, tzinfo=UTC)
STANDBY = ServiceState(service="web", live_side="blue", updated_at=T0)
"""green is the standby: no guard refuses."""

EXPECTED: dict[Event, dict[SideStateName, tuple[SideStateName, bool] | None]] = {
    # state -> (next state, moved) or None (refused)
    "patch_begun": {s: ("patching", True) for s in SIDE_STATES},
    "patch_done": {s: ("patched", True) if s == "patching" else None for s in SIDE_STATES},
    "verified_ok": {
        "untouched": ("verified", True), "patched": ("verified", True),
        "verified": ("verified", True), "verify_failed": ("verified", True),
        "patching": ("patching", False), "failed_live": ("failed_live", False),
        "quarantined": ("quarantined", False),
    },
    "verified_failed": {
        "untouched": ("verify_failed", True), "patched": ("verify_failed", True),
        "verified": ("verify_failed", True), "verify_failed": ("verify_failed", True),
        "patching": ("patching", False), "failed_live": ("failed_live", False),
        "quarantined": ("quarantined", False),
    },
    "rolled_back_from": {s: ("quarantined", False) if s == "quarantined"
                         else ("failed_live", True) for s in SIDE_STATES},
    "quarantined": {s: ("quarantined", s != "quarantined") for s in SIDE_STATES},
    "reimaged": {s: ("untouched", True) for s in SIDE_STATES},
    # without a state to restore: the table's default (the side had no row before)
    "patch_untouched": {s: ("untouched", True) if s == "patching" else None
                        for s in SIDE_STATES},
}


@pytest.mark.parametrize("event", EVENTS)
@pytest.mark.parametrize("state", SIDE_STATES)
def test_every_state_and_event(state: SideStateName, event: Event) -> None:
    expected = EXPECTED[event][state]
    if expected is None:
        with pytest.raises(TransitionRefused) as caught:
            step("web", "green", state, event, STANDBY)
        assert state in caught.value.message and event in caught.value.message
        assert caught.value.hint
        return
    moved = step("web", "green", state, event, STANDBY)
    assert (moved.state, moved.moved) == expected


@pytest.mark.parametrize("prior", SIDE_STATES)
def test_an_untouched_patch_restores_whatever_state_came_before(prior: SideStateName) -> None:
    assert step("web", "green", "patching", "patch_untouched", STANDBY, restore=prior) == (
        Step(prior, True))
    with pytest.raises(TransitionRefused, match="patch_untouched"):
        step("web", "green", "verified", "patch_untouched", STANDBY, restore=prior)


@pytest.mark.parametrize("event", [e for e in EVENTS if not TABLE[e].restores])
def test_only_a_restoring_event_takes_a_state_to_restore(event: Event) -> None:
    with pytest.raises(TransitionRefused, match="does not restore"):
        step("web", "green", "patching", event, STANDBY, restore="verified")


def test_the_table_names_who_may_cause_each_event() -> None:
    assert set(TABLE) == set(EVENTS)
    for rule in TABLE.values():
        assert rule.who
        assert not set(rule.moves) & rule.keeps


def test_only_a_patch_leads_out_of_quarantine_and_failed_live() -> None:
    """No verification lifts them: a patch begun after them (or a re-image) does."""
    for held in ("quarantined", "failed_live"):
        leaving = {e for e in EVENTS if EXPECTED[e][held] not in (None, (held, False))
                   and EXPECTED[e][held] != (held, True)}
        assert leaving == {"patch_begun", "reimaged"} | (
            {"quarantined"} if held == "failed_live" else set()), held


@pytest.mark.parametrize("event", ["patch_begun", "quarantined", "rolled_back_from"])
def test_guards_refuse_the_live_side(event: Event) -> None:
    with pytest.raises(TransitionRefused, match="live"):
        step("web", "blue", "verified", event, STANDBY)


def test_no_patch_during_a_pending_flip_or_while_a_flip_is_not_persisted() -> None:
    pending = PendingFlip(id="f1", from_side="blue", to_side="green", command="flip",
                          actor="a", reason="r", at=T0)
    busy = ServiceState(service="web", live_side="blue", updated_at=T0, pending_flip=pending)
    with pytest.raises(TransitionRefused, match="in progress"):
        step("web", "green", "verified", "patch_begun", busy)
    loose = ServiceState(service="web", live_side="blue", updated_at=T0,
                         flip_problem="not persisted: disk full")
    with pytest.raises(TransitionRefused, match="not persisted"):
        step("web", "green", "verified", "patch_begun", loose)
    assert step("web", "green", "verified", "patch_begun", None).state == "patching"


def test_a_generation_conflict_says_what_changed() -> None:
    error = changed("web", "green", 4, 5, "quarantined", "INC-7", during="the patch")
    assert isinstance(error, SideChanged)
    for part in ("green", "the patch", "4 -> 5", "quarantined", "INC-7"):
        assert part in error.message


def test_only_the_transition_function_writes_the_sides_table() -> None:
    """`UPDATE sides` (and any other write of the table) appears in exactly one place of the
    package: `SideRows._transition`. The schema's migrations and `state copy` (which loads
    whole tables) are the only other writers, named here."""
    root = Path(__file__).resolve().parents[3] / "orchestrator"
    write = re.compile(r"\b(UPDATE|DELETE\s+FROM|INSERT\s+INTO)\s+sides\b", re.IGNORECASE)
    found: list[tuple[str, str]] = []
    for path in sorted(root.rglob("*.py")):
        rel = path.relative_to(root).as_posix()
        for match in write.finditer(path.read_text()):
            found.append((rel, match.group(1).split()[0].upper()))
    migrations = {"state/sqlite/schema.py", "state/postgresql/schema.py"}
    runtime = [f for f in found if f[0] not in migrations]
    assert [f for f in runtime if f[1] == "UPDATE"] == [("state/sql/sides.py", "UPDATE")]
    # the row is created (empty, untouched) right before the update, in the same function
    assert runtime == [("state/sql/sides.py", "INSERT"), ("state/sql/sides.py", "UPDATE")]
    source = (root / "state/sql/sides.py").read_text()
    body = source[source.index("    def _transition("):]
    assert "INSERT INTO sides" in body and "UPDATE sides" in body
