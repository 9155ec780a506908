"""Each service's status in a campaign run, derived from the journal and its child runs,
with the JSON keys `campaign status --json` has always had."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from orchestrator.campaign.journal import APPROVAL, Journal, Step
from orchestrator.campaign.ops import campaign_status
from orchestrator.campaign.state import service_states
from orchestrator.state import SQLiteStateStore

WAVES = [["web", "api"], ["db"]]


@pytest.fixture
def store(tmp_path: Path) -> Iterator[SQLiteStateStore]:
    with SQLiteStateStore(tmp_path / "state.db") as opened:
        opened.create_run("c1", "campaign", None, {"name": "c", "waves": WAVES}, "alice")
        yield opened


def test_pending_in_flight_and_done(store: SQLiteStateStore) -> None:
    journal = Journal(store, "c1")
    store.create_run("r-web", "rollout", "web", {}, "alice")
    journal.begin(Step.of_service("web"), {"child_run": "r-web"})
    journal.end(Step.of_service("web"), {"status": "done", "from": "blue", "to": "green"})
    journal.begin(Step.converge("web"), {"at": "now"})
    journal.end(Step.converge("web"), {"ok": True, "message": "converged"})
    store.create_run("r-api", "rollout", "api", {}, "alice")
    journal.begin(Step.of_service("api"), {"child_run": "r-api"})
    states = service_states(store, "c1", WAVES)
    assert {n: s.as_dict() for n, s in states.items()} == {
        "web": {"wave": 1, "child_run": "r-web", "status": "done", "from": "blue",
                "to": "green", "converged": True},
        "api": {"wave": 1, "child_run": "r-api", "status": "in flight"},
        "db": {"wave": 2, "child_run": None, "status": "pending"},
    }
    status = campaign_status(store, store.get_run("c1"))  # type: ignore[arg-type]
    doc = status.as_dict()
    assert doc["progress"] == {"services_done": 1, "services": 3, "waves_done": 0, "waves": 2}
    assert doc["services"]["web"]["status"] == "done" and doc["approval"] is None


def test_a_failed_run_skips_what_it_did_not_begin(store: SQLiteStateStore) -> None:
    journal = Journal(store, "c1")
    journal.begin(Step.of_service("web"), {"child_run": None})
    journal.end(Step.of_service("web"), {"status": "failed", "error": "x", "exit_code": 3})
    store.finish_run("c1", "failed", "web failed:3")
    states = service_states(store, "c1", WAVES)
    assert [states[n].status for n in ("web", "api", "db")] == ["failed", "skipped", "skipped"]
    assert states["web"].as_dict()["from"] is None  # ended: the keys are there


def test_a_deferred_run_defers_the_rest_unless_it_awaits_approval(
    store: SQLiteStateStore,
) -> None:
    store.finish_run("c1", "deferred", "window closed")
    assert {s.status for s in service_states(store, "c1", WAVES).values()} == {"deferred"}
    store.create_run("c2", "campaign", None, {"name": "c2", "waves": WAVES}, "alice")
    Journal(store, "c2").begin(APPROVAL, {"at": "before_patch"})
    store.finish_run("c2", "deferred", "awaiting approval")
    assert {s.status for s in service_states(store, "c2", WAVES).values()} == {"pending"}
    assert campaign_status(store, store.get_run("c2")).status == "awaiting_approval"  # type: ignore[arg-type]
