"""Quarantine through the kernel, with a fake router and the real SQLite store."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from orchestrator.errors import BadInput, VerificationFailed
from orchestrator.sides import Side
from orchestrator.state import AuditEntryInput, SQLiteStateStore
from orchestrator.testing import FakeRouter, patched, temp_store
from orchestrator.traffic import FlipRequest, move_traffic
from orchestrator.traffic.quarantine import quarantine_side

SETUP = AuditEntryInput(actor="test", command="setup")


@pytest.fixture
def store(tmp_path: Path) -> Iterator[SQLiteStateStore]:
    with temp_store(tmp_path) as opened:
        yield opened


@pytest.fixture
def router() -> FakeRouter:
    return FakeRouter({"web": "blue"})


def verified(store: SQLiteStateStore, side: Side, level: str = "v2") -> None:
    patched(store, "web", side, level, audit=SETUP)
    store.record_verification("web", side, True, level, "all passed", audit=SETUP, hosts={})


def state(store: SQLiteStateStore, side: Side) -> str:
    rec = store.get_side("web", side)
    return rec.state if rec else "untouched"


def flip(store: SQLiteStateStore, router: FakeRouter, to: Side, command: str = "flip") -> None:
    move_traffic(store, router, FlipRequest(service="web", command=command, reason="t",
                                            actor="bob", to=to, abort_in_flight=True))


def test_live_side_flips_to_the_verified_standby_then_is_quarantined(
    store: SQLiteStateStore, router: FakeRouter
) -> None:
    verified(store, "green")
    out = quarantine_side(store, router, "web", "blue", "INC-1 new root key", "alice")
    assert out.changed and out.flip is not None and out.flip.to_side == "green"
    assert router.live("web") == "green"
    assert state(store, "blue") == "quarantined"
    assert store.get_side("web", "blue").state_reason == "INC-1 new root key"  # type: ignore[union-attr]
    records = [(r.command, r.actor, r.reason) for r in store.audit_records("web")]
    assert records[-2:] == [("quarantine.begin", "alice", "INC-1 new root key"),
                            ("quarantine", "alice", "INC-1 new root key")]
    # the mark is in the flip's own record: one transaction, never one without the other
    assert store.audit_records("web")[-1].after["blue_state"] == "quarantined"
    # never a flip target again: not by flip, not by rollback, not after a verification
    for command in ("flip", "rollback"):
        with pytest.raises(VerificationFailed, match="quarantined"):
            flip(store, router, "blue", command)
    store.record_verification("web", "blue", True, None, "passed", audit=SETUP, hosts={})
    assert state(store, "blue") == "quarantined"
    with pytest.raises(VerificationFailed, match="quarantined"):
        flip(store, router, "blue")
    # a new patch (rebuild) and a passing verification lift it
    verified(store, "blue", "v3")
    flip(store, router, "blue")
    assert router.live("web") == "blue"


def test_refused_when_the_other_side_may_not_take_traffic(
    store: SQLiteStateStore, router: FakeRouter
) -> None:
    with pytest.raises(VerificationFailed, match="refusing to send traffic to green"):
        quarantine_side(store, router, "web", "blue", "INC-2", "alice")
    assert router.live("web") == "blue" and state(store, "blue") == "untouched"
    # nothing changed (the kernel's first look at the service records its live side)
    assert [r.command for r in store.audit_records("web")] == ["adopt"]


def test_standby_is_marked_without_moving_traffic_and_again_is_a_no_op(
    store: SQLiteStateStore, router: FakeRouter
) -> None:
    out = quarantine_side(store, router, "web", "green", "INC-3", "alice")
    assert out.changed and out.flip is None and router.live("web") == "blue"
    again = quarantine_side(store, router, "web", "green", "INC-3 again", "alice")
    assert not again.changed and "already quarantined (INC-3)" in again.message
    assert [r.command for r in store.audit_records("web")].count("quarantine") == 1
    with pytest.raises(BadInput, match="reason"):
        quarantine_side(store, router, "web", "green", " ", "alice")
