"""A campaign run's journal, typed: step keys round-trip through the store's text keys, and
a service's outcome keeps the exit code its failure maps to."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from orchestrator.campaign.journal import (
    APPROVAL,
    DEFERRED,
    DONE,
    ROLLED_BACK,
    Journal,
    Outcome,
    ServiceOutcome,
    Step,
    StepKind,
)
from orchestrator.state import SQLiteStateStore


@pytest.fixture
def store(tmp_path: Path) -> Iterator[SQLiteStateStore]:
    with SQLiteStateStore(tmp_path / "state.db") as opened:
        opened.create_run("c1", "campaign", None, {"name": "c"}, "alice")
        yield opened


@pytest.mark.parametrize(
    ("step", "key"),
    [
        (Step.of_service("web"), "service:web"),
        (Step.converge("api"), "converge:api"),
        (APPROVAL, "approval"),
        (DEFERRED, "deferred"),
    ],
)
def test_step_keys_are_the_stored_text(step: Step, key: str) -> None:
    assert str(step) == key
    assert Step.parse(key) == step


@pytest.mark.parametrize("key", ["patch", "service", "approval:web", "service:"])
def test_keys_no_campaign_writes_are_refused(key: str) -> None:
    with pytest.raises(ValueError):
        Step.parse(key)


def test_outcomes_say_what_run_messages_said() -> None:
    assert str(DONE) == "done" and not DONE.is_failure
    assert str(ServiceOutcome.failed(3)) == "failed:3"
    assert ServiceOutcome.failed(3).exit_code == 3 and ServiceOutcome.failed(3).is_failure
    assert str(ROLLED_BACK) == "rolled_back" and ROLLED_BACK.exit_code == 4
    assert not ServiceOutcome(Outcome.DEFERRED).is_failure


def test_journal_reads_its_steps_typed(store: SQLiteStateStore) -> None:
    journal = Journal(store, "c1")
    web = Step.of_service("web")
    journal.begin(web, {"child_run": "r1", "before": {"h1": {}}})
    journal.begin(web, {"child_run": "r1-again"})  # a resume begins it once more
    journal.begin(APPROVAL, {"at": "before_flip"})
    journal.end(web, {"status": "done", "from": "blue", "to": "green"})
    assert journal.begun() == {
        web: {"child_run": "r1", "before": {"h1": {}}},  # the first begin record counts
        APPROVAL: {"at": "before_flip"},
    }
    assert journal.ended() == {web: {"status": "done", "from": "blue", "to": "green"}}
    assert [e.step for e in store.journal("c1")] == ["service:web"] * 2 + ["approval", "service:web"]
    assert {s.kind for s in journal.begun()} == {StepKind.SERVICE, StepKind.APPROVAL}
