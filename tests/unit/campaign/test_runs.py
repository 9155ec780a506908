"""Which run a command acts on (orchestrator/campaign/runs.py): `resume`, `campaign run
--continue`, `campaign status`, and `campaign abort`'s typed result."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from orchestrator.campaign.ops import AbortedCampaign, abort
from orchestrator.campaign.runs import (
    NothingToContinue,
    latest_runs,
    rollout_to_resume,
    run_to_continue,
)
from orchestrator.errors import BadInput
from orchestrator.state.sqlite import SQLiteStateStore
from orchestrator.testing import temp_store


@pytest.fixture
def store(tmp_path: Path) -> Iterator[SQLiteStateStore]:
    with temp_store(tmp_path) as s:
        yield s


def rollout(store: SQLiteStateStore, run_id: str, **params: str) -> str:
    store.create_run(run_id, "rollout", "web", dict(params), "alice")
    return run_id


def campaign(store: SQLiteStateStore, run_id: str, name: str) -> str:
    store.create_run(run_id, "campaign", None, {"name": name, "waves": [["web"]]}, "alice")
    return run_id


def test_resume_takes_the_newest_running_rollout_no_campaign_owns(
    store: SQLiteStateStore,
) -> None:
    assert rollout_to_resume(store, None) is None
    rollout(store, "r1")
    rollout(store, "r2")
    rollout(store, "child", campaign_run="campaign-c-1", campaign="c")
    picked = rollout_to_resume(store, None)
    assert picked is not None and picked.run_id == "r2"
    store.finish_run("r2", "done", "ok")
    store.finish_run("r1", "failed", "x")
    assert rollout_to_resume(store, None) is None  # the campaign's child is not ours


def test_resume_refuses_a_campaigns_rollout_an_ended_run_and_an_unknown_one(
    store: SQLiteStateStore,
) -> None:
    rollout(store, "child", campaign_run="campaign-c-1", campaign="c")
    with pytest.raises(BadInput, match="part of campaign c") as err:
        rollout_to_resume(store, "child")
    assert err.value.hint == "bluegreen campaign resume c"
    store.finish_run(rollout(store, "old"), "done", "ok")
    with pytest.raises(BadInput, match="already ended"):
        rollout_to_resume(store, "old")
    with pytest.raises(BadInput, match="no run 'nope'"):
        rollout_to_resume(store, "nope")
    picked = rollout_to_resume(store, rollout(store, "r3"))
    assert picked is not None and picked.run_id == "r3"


def test_continue_resumes_the_unfinished_run_and_never_starts_a_new_one(
    store: SQLiteStateStore,
) -> None:
    assert run_to_continue(store, "c", "c.yml") is None  # never ran: start it
    campaign(store, "campaign-c-1", "c")
    campaign(store, "campaign-other-1", "other")
    found = run_to_continue(store, "c", "c.yml")
    assert not isinstance(found, NothingToContinue) and found is not None
    assert found.run_id == "campaign-c-1"
    store.finish_run("campaign-c-1", "done", "ok")
    nothing = run_to_continue(store, "c", "c.yml")
    assert isinstance(nothing, NothingToContinue)
    assert "campaign-c-1" in nothing.message and "`bluegreen campaign run c.yml`" in nothing.message
    doc = nothing.as_dict()
    assert doc["status"] == "nothing_to_continue" and doc["exit_code"] == 0
    assert doc["last_status"] == "done"


def test_latest_runs_keeps_the_newest_of_each_campaign(store: SQLiteStateStore) -> None:
    campaign(store, "campaign-a-1", "a")
    campaign(store, "campaign-b-1", "b")
    campaign(store, "campaign-a-2", "a")
    assert [r.run_id for r in latest_runs(store)] == ["campaign-a-2", "campaign-b-1"]


def test_abort_says_what_it_ended(store: SQLiteStateStore) -> None:
    campaign(store, "campaign-c-1", "c")
    ended = abort(store, "c", "alice", "window too short")
    assert ended == AbortedCampaign("c", "campaign-c-1", [])
    assert ended.as_dict() == {"campaign": "c", "run_id": "campaign-c-1",
                               "aborted_children": [], "still_stopping": []}
    run = store.get_run("campaign-c-1")
    assert run is not None and run.status == "aborted"
