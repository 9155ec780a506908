"""The rollout's model (tests/unit/rollout/test_rollout_model.py) on PostgreSQL, with one
more thing that can happen at any failpoint of the run or while Ansible runs: the run's
database session ends (`pg_terminate_backend`, what a server restart, a failover, a
partition or a DBA does to it; issue 20, 10). Its advisory locks end with it, silently;
the process goes on. Besides every invariant of the SQLite model (after every rule), from
the moment its session ended the holder records nothing more (every table, the audit head:
byte for byte) and moves no traffic; the run stays as it was left, and the next rollout
takes the lock over with a new epoch (the old run `abandoned`) or `resume` continues it.

CI runs a small derandomized set (every step is a few round trips to the server);
`BLUEGREEN_MODEL_PG_EXAMPLES=N` (and `BLUEGREEN_MODEL_STEPS=M`) explores with random seeds.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import strategies as st
from hypothesis.stateful import precondition, rule

from orchestrator.sides import Side
from tests.support import postgres
from tests.support.model import model_settings
from tests.support.model_rules import OPERATOR_COMMANDS
from tests.unit.rollout.test_rollout_model import (
    DURING_PATCH,
    LEVELS,
    RUN_COMMANDS,
    RUN_POINTS,
    RolloutModel,
    _resume,
    _start,
    play,
    run_crash,
)

KILL = "kill_session"
POINTS = st.sampled_from((*RUN_POINTS, DURING_PATCH))
meanwhile = st.one_of(
    st.none(),
    st.tuples(POINTS, st.just(KILL)),  # often: the few examples CI runs should kill
    st.tuples(POINTS, st.sampled_from((*OPERATOR_COMMANDS, *RUN_COMMANDS, KILL))),
)


class RolloutModelOnPostgres(RolloutModel):
    """`state_url` is set by the module's fixture (a throwaway database, emptied per
    example)."""

    def __init__(self) -> None:
        assert self.state_url is not None, "the PostgreSQL database fixture did not run"
        super().__init__()
        assert type(self.world.observer).__name__ == "PostgresStateStore"
        self.lost: dict[str, list[tuple[object, ...]]] | None = None
        """The database when the run's session ended (None: it did not)."""

    def _operator(self, command: str) -> None:
        if command == KILL:
            self.kill_session()
        else:
            super()._operator(command)

    def kill_session(self) -> None:
        """The running rollout's database session ends under it."""
        store, url = self.run_store, self.world.state_url
        if store is None or url is None or self.lost is not None:
            return
        postgres.terminate_session(url, postgres.backend_pid(store))
        self.lost = postgres.snapshot(url)
        self.world.session_lost = True

    def _run_ended(self) -> None:
        lost, self.lost = self.lost, None
        self.world.session_lost = False
        if lost is None or self.world.state_url is None:
            return
        now = postgres.snapshot(self.world.state_url)
        changed = {table: (rows, now[table]) for table, rows in lost.items()
                   if now[table] != rows}
        assert not changed, f"a holder that lost its session recorded: {changed}"

    # the rollout's rules, with the session kill among the things that happen meanwhile
    @rule(level=st.sampled_from(LEVELS), patch_ok=st.booleans(), verify_ok=st.booleans(),
          bake_ok=st.booleans(), crash=run_crash, meanwhile=meanwhile)
    def rollout_start(self, level: str, patch_ok: bool, verify_ok: bool, bake_ok: bool,
                      crash: str | None, meanwhile: tuple[str, str] | None) -> None:
        super().rollout_start(level, patch_ok, verify_ok, bake_ok, crash, meanwhile)

    @precondition(lambda self: self._resumable_run() is not None)
    @rule(patch_ok=st.booleans(), verify_ok=st.booleans(), bake_ok=st.booleans(),
          crash=run_crash, meanwhile=meanwhile)
    def rollout_resume(self, patch_ok: bool, verify_ok: bool, bake_ok: bool,
                       crash: str | None, meanwhile: tuple[str, str] | None) -> None:
        super().rollout_resume(patch_ok, verify_ok, bake_ok, crash, meanwhile)

    @precondition(lambda self: self._running_run() is not None)
    @rule(level=st.sampled_from(LEVELS), crash=run_crash, meanwhile=meanwhile)
    def rollout_takes_over(self, level: str, crash: str | None,
                           meanwhile: tuple[str, str] | None) -> None:
        super().rollout_takes_over(level, crash, meanwhile)


@pytest.fixture(scope="module", autouse=True)
def _postgres_for_the_model() -> Iterator[None]:
    with postgres.throwaway_database("bluegreen_model") as url:
        RolloutModelOnPostgres.state_url = postgres.migrated(url)
        yield
        RolloutModelOnPostgres.state_url = None


TestRolloutModelOnPostgres = RolloutModelOnPostgres.TestCase
TestRolloutModelOnPostgres.settings = model_settings("BLUEGREEN_MODEL_PG_EXAMPLES", 6, 15)


# -- a session lost at the moments that matter, as fixed examples of the same machine ------

SCENARIOS: dict[str, tuple[list[tuple[str, dict[str, Any]]], Side, dict[Side, str],
                           list[str]]] = {
    # while Ansible runs: the patch is never recorded (green stays patching), the run is
    # left running without a lock; the next rollout takes over (the old run abandoned)
    "session_lost_while_ansible_runs": ([
        _start(meanwhile=(DURING_PATCH, KILL)),
        ("rollout_takes_over", {"level": LEVELS[1], "crash": None, "meanwhile": None}),
    ], "green", {"green": "verified"}, ["abandoned", "done"]),
    # after the flip's intent is journaled, before the router changes: traffic stays; the
    # same run resumed (elsewhere, a new epoch) cancels the intent and flips itself
    "session_lost_before_the_router_changes": ([
        _start(meanwhile=("traffic:intent:rollout.flip", KILL)),
        _resume(),
    ], "green", {"green": "verified"}, ["done"]),
    # after the router changed, before the flip is recorded: it cannot be recorded; the
    # next command (the resumed run's settle) finds where traffic is and records it
    "session_lost_between_router_and_record": ([
        _start(meanwhile=("traffic:router:rollout.flip", KILL)),
        _resume(),
        ("rollback", {"to": None, "crash": None}),
    ], "blue", {"green": "failed_live"}, ["done"]),
    # in the bake's automatic rollback (traffic stays on green, the resumed run rolls back
    # itself), and at a step boundary (then `unlock`, and resume)
    "session_lost_in_the_auto_rollback_and_at_a_step": ([
        _start(bake_ok=False, meanwhile=("traffic:intent:rollout.auto-rollback", KILL)),
        _resume(bake_ok=False),
        _start(LEVELS[1], meanwhile=("verify:begin", KILL)),
        ("unlock", {}),  # the holder is gone: nothing to free, the run stays resumable
        _resume(),
    ], "green", {"green": "verified"}, ["rolled_back", "done"]),
}


@pytest.mark.parametrize("name", sorted(SCENARIOS))
def test_session_lost(name: str) -> None:
    steps, live, states, last_runs = SCENARIOS[name]
    statuses = play(RolloutModelOnPostgres(), steps, live, states)
    assert statuses[-len(last_runs):] == last_runs, statuses
