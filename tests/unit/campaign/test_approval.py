"""Approvals that must come from another person, judged on the OS identity, against a real
SQLite store."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from orchestrator.campaign.journal import APPROVAL, Journal
from orchestrator.campaign.model import Approval
from orchestrator.campaign.ops import approve
from orchestrator.errors import BadInput
from orchestrator.state import SQLiteStateStore


@pytest.fixture
def store(tmp_path: Path) -> Iterator[SQLiteStateStore]:
    with SQLiteStateStore(tmp_path / "state.db") as opened:
        yield opened


def awaiting(store: SQLiteStateStore, distinct: bool, monkeypatch: pytest.MonkeyPatch,
             started_by: str | None) -> str:
    """A campaign run, started with SUDO_USER=`started_by`, waiting for its approval."""
    if started_by:
        monkeypatch.setenv("SUDO_USER", started_by)
    else:
        monkeypatch.delenv("SUDO_USER", raising=False)
    with SQLiteStateStore(store.path) as starter:  # the starting process
        policy = {"mode": "manual", "at": "before_flip", "distinct_approver": distinct}
        starter.create_run("campaign-c-1", "campaign", None,
                           {"name": "c", "campaign": {"approval": policy}, "waves": []},
                           "alice")
        Journal(starter, "campaign-c-1").begin(APPROVAL, {"at": "before_flip"})
    return "c"


def approve_as(store: SQLiteStateStore, monkeypatch: pytest.MonkeyPatch,
               sudo_user: str | None, actor: str = "claims-anything") -> dict[str, object]:
    if sudo_user:
        monkeypatch.setenv("SUDO_USER", sudo_user)
    else:
        monkeypatch.delenv("SUDO_USER", raising=False)
    with SQLiteStateStore(store.path) as approver:
        return approve(approver, "c", actor)


def test_the_starter_cannot_approve_whatever_actor_they_claim(
    store: SQLiteStateStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    awaiting(store, True, monkeypatch, started_by="alice")
    before = len(store.audit_records())
    with pytest.raises(BadInput, match="another person") as err:
        approve_as(store, monkeypatch, "alice", actor="bob")
    assert "alice" in err.value.message and err.value.hint
    assert len(store.audit_records()) == before  # refused: nothing recorded


def test_root_without_sudo_names_nobody_and_cannot_approve(
    store: SQLiteStateStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    awaiting(store, True, monkeypatch, started_by="alice")
    if store.audit_records()[-1].os_uid != 0:
        pytest.fail("this test runs as root, as the whole suite does")
    with pytest.raises(BadInput, match="names nobody"):
        approve_as(store, monkeypatch, None)


def test_another_person_approves_and_is_on_record(
    store: SQLiteStateStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    awaiting(store, True, monkeypatch, started_by="alice")
    doc = approve_as(store, monkeypatch, "bob", actor="bob")
    assert doc["sudo_user"] == "bob"
    record = store.audit_records()[-2]  # the approval, then the journal's end
    assert record.command == "campaign.approve" and record.sudo_user == "bob"
    assert store.verify_audit().ok


def test_without_the_policy_anyone_approves(
    store: SQLiteStateStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    awaiting(store, False, monkeypatch, started_by="alice")
    assert approve_as(store, monkeypatch, "alice")["sudo_user"] == "alice"


def test_distinct_approver_needs_manual_mode() -> None:
    with pytest.raises(ValueError, match="needs approval.mode: manual"):
        Approval(mode="auto", distinct_approver=True)
    assert Approval(mode="manual", distinct_approver=True).distinct_approver
