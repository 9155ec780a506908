"""Model-based test of the safety kernel (issue 10): hypothesis drives random sequences of
operator commands (flip, rollback, verify, status/settle, adopt), a rollout's steps (made
with the same store and kernel calls as orchestrator/rollout/, one step per rule, so
anything can happen between two steps or while "Ansible runs"), crashes at every failpoint
(the process's in-memory objects are dropped; the next process starts from the store),
and faults of the load balancer (`set map` ok then persisting fails, the confirming
request fails, the socket is gone, a reload, no server UP) and of the hosts (re-imaged
behind bluegreen's back). After every rule, `World.check` (tests/support/model.py) checks
the invariants of ARCHITECTURE.md and issue 10 against a fake router and the real SQLite
store in a temporary directory.

CI runs a fixed, derandomized set of examples; `BLUEGREEN_MODEL_EXAMPLES=N` runs N random
ones (and `BLUEGREEN_MODEL_STEPS=M` steps each), see README "Model-based tests".
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import strategies as st
from hypothesis.stateful import invariant, precondition, rule

from orchestrator.errors import (
    Aborted,
    BluegreenError,
    FlipIncomplete,
    OutsideWindow,
    PatchFailed,
    RolledBack,
    StateMismatch,
    VerificationFailed,
)
from orchestrator.sides import Side, other_side
from orchestrator.state import AuditEntryInput, StateStore
from orchestrator.state.models import RESUMABLE_STATUSES
from orchestrator.testing import SimulatedCrash, at_failpoints
from orchestrator.traffic import FlipRequest, failpoints, move_traffic, settle
from tests.support import postgres
from tests.support.model import SERVICE, Host, World, model_settings
from tests.support.model_rules import KERNEL_POINTS, OPERATOR_COMMANDS, TrafficMachine

STEPS = ("precheck", "patch", "verify", "flip", "bake")
RUN_POINTS = (*KERNEL_POINTS, *(f"{s}:{p}" for s in STEPS for p in ("begin", "end")))
LEVELS = ("L1", "L2")

run_crash_points = st.one_of(st.none(), st.sampled_from(RUN_POINTS))
meanwhile = st.one_of(st.none(), st.tuples(
    st.sampled_from(RUN_POINTS), st.sampled_from(OPERATOR_COMMANDS)))


class RunProcess:
    """A rollout's process, one step per call, with the store and kernel calls of
    orchestrator/rollout/ (precheck -> patch -> verify -> flip -> bake). The patch step
    takes two calls: between them Ansible runs on the standby."""

    def __init__(self, world: World, run_id: str) -> None:
        self.world = world
        self.run_id = run_id
        self.store: StateStore = world.open_store()
        self.holder = world.spawn_holder()
        self.in_patch = False
        self.ended = False
        self.plan: dict[str, Any] = {}
        self.level = "L0"
        self.patch_generation = 0
        """What `begin_patch` returned: `record_patch` is refused if the side moved on."""
        self.verified_generation: int | None = None
        """What the verification left (journaled): the flip binds to it."""

    # -- entry points -------------------------------------------------------------------
    def start(self, level: str) -> None:
        self.level = level

        def begin() -> None:
            self.store.acquire_lock(SERVICE, self.run_id, self.holder)
            self.store.create_run(self.run_id, "rollout", SERVICE, {"level": level}, "ci")

        self._guarded(begin)

    def resume(self) -> None:
        run = self.store.get_run(self.run_id)
        assert run is not None
        self.level = str(run.params["level"])
        self._guarded(self._resume)

    def advance(self, ok: bool) -> None:
        self._guarded(lambda: self._advance(ok))

    def crash(self) -> None:
        """kill -9: no cleanup, the lock stays with a dead holder."""
        self.store.close()
        self.world.kill_holder(self.holder.pid)
        self.ended = True

    # -- the state machine (rollout._drive) -----------------------------------------------
    def _guarded(self, body: Any) -> None:
        try:
            body()
        except RolledBack as exc:
            self._exit("rolled_back", exc.message)
        except Aborted:
            self._exit(None, None)
        except OutsideWindow as exc:  # deferred: its campaign resumes it when it opens
            self._exit("deferred", exc.message)
        except BluegreenError as exc:
            self._exit(None if self._aborted() else "failed", exc.message)

    def _resume(self) -> None:
        self.store.acquire_lock(SERVICE, self.run_id, self.holder)  # takes over a dead one
        ends = {e.step: e.data for e in self.store.journal(self.run_id) if e.phase == "end"}
        begun = {e.step for e in self.store.journal(self.run_id) if e.phase == "begin"}
        self.plan = dict(ends.get("precheck", {}))
        self.verified_generation = ends.get("verify", {}).get("generation")
        if not self.plan:
            return
        live = settle(self.store, self.world.router, SERVICE, "ci")
        if "flip" in ends and "bake" in begun and live == self.plan["live"]:
            raise RolledBack("the bake's automatic rollback had moved traffic back")
        if "flip" in ends:
            expected = [self.plan["standby"]]
        elif "flip" in begun:
            expected = [self.plan["live"], self.plan["standby"]]
        else:
            expected = [self.plan["live"]]
        if live not in expected:
            raise StateMismatch(f"cannot resume: {live} is live, expected {expected}")

    def next_step(self) -> str | None:
        """The step the next advance() runs ("patch" also while Ansible runs)."""
        if self.ended:
            return None
        done = {e.step for e in self.store.journal(self.run_id) if e.phase == "end"}
        return next((s for s in STEPS if s not in done), "finish")

    def _advance(self, ok: bool) -> None:
        if self.in_patch:
            self._finish_patch(ok)
            return
        step = self.next_step()
        if step == "finish":
            self.store.finish_run(self.run_id, "done", "done")
            self._exit(None, None)
            return
        if self._aborted():
            raise Aborted("aborted")
        self.store.journal_begin(self.run_id, step)
        failpoints.hit(f"{step}:begin")
        data = getattr(self, f"_{step}")(ok)
        if step != "patch":
            self._end(step, data)

    def _end(self, step: str, data: dict[str, Any]) -> None:
        self.store.journal_end(self.run_id, step, data)
        failpoints.hit(f"{step}:end")

    def _precheck(self, ok: bool) -> dict[str, Any]:
        live = settle(self.store, self.world.router, SERVICE, "ci")
        self.plan = {"live": live, "standby": other_side(live)}
        return self.plan

    def _patch(self, ok: bool) -> dict[str, Any]:
        standby: Side = self.plan["standby"]
        began = self.store.begin_patch(SERVICE, standby, self.level, audit=AuditEntryInput(
            actor="ci", command="rollout.patch.begin", service=SERVICE,
            reason=f"run {self.run_id}"))
        self.patch_generation = began.generation
        self.world.ansible_starts(standby, self.level)
        self.in_patch = True  # Ansible runs now; the next advance() sees how it ended
        return {}

    def _finish_patch(self, ok: bool) -> None:
        self.in_patch = False
        standby: Side = self.plan["standby"]
        if self._aborted():  # the cancel callback: Ansible stops mid-run
            raise Aborted("aborted while patching")
        if not ok:
            raise PatchFailed("apt failed")
        truth = self.world.hosts[standby]
        self.world.hosts_changed(standby, Host(self.level, False, truth.fingerprint))
        self.store.record_patch(SERVICE, standby, self.level, audit=AuditEntryInput(
            actor="ci", command="rollout.patch", service=SERVICE, reason=f"run {self.run_id}"),
            expected_generation=self.patch_generation)
        self._end("patch", {"side": standby})

    def _verify(self, ok: bool) -> dict[str, Any]:
        standby: Side = self.plan["standby"]
        began = self.store.get_side(SERVICE, standby)
        truth = self.world.hosts[standby]
        passed = ok and not truth.partial and truth.level == self.level
        recorded = self.store.record_verification(
            SERVICE, standby, passed, self.level, "model", hosts=truth.fingerprints(standby),
            expected_generation=began.generation if began else 0,
            audit=AuditEntryInput(actor="ci", command="verify", service=SERVICE))
        if not passed:
            raise VerificationFailed("verification failed")
        self.verified_generation = recorded.generation
        return {"side": standby, "generation": recorded.generation, "level": self.level}

    def _may_flip(self) -> str | None:
        return None if self.world.window_open else "outside the maintenance window"

    def _flip(self, ok: bool) -> dict[str, Any]:
        outcome = move_traffic(self.store, self.world.router, FlipRequest(
            service=SERVICE, command="rollout.flip", reason=f"run {self.run_id}", actor="ci",
            to=self.plan["standby"], run_id=self.run_id, recheck_hosts=self.world.recheck,
            still_allowed=self._may_flip, verified_generation=self.verified_generation))
        return {"changed": outcome.changed}

    def _bake(self, ok: bool) -> dict[str, Any]:
        if self._aborted():
            raise Aborted("aborted during bake")
        if ok:
            return {}
        try:
            move_traffic(self.store, self.world.router, FlipRequest(
                service=SERVICE, command="rollout.auto-rollback", actor="ci", to=None,
                reason=f"run {self.run_id}: bake failed", run_id=self.run_id))
        except FlipIncomplete as exc:
            raise RolledBack(f"back, but {exc.message}") from exc
        except (Aborted, StateMismatch):
            raise
        except BluegreenError as exc:
            raise BluegreenError(f"the automatic rollback failed: {exc.message}") from exc
        raise RolledBack("rolled back")

    # -- helpers --------------------------------------------------------------------------
    def _aborted(self) -> bool:
        run = self.store.get_run(self.run_id)
        return run is not None and run.status == "aborted"

    def _exit(self, status: Any, message: str | None) -> None:
        """The run's process ends: its status (unless aborted already), its lock."""
        run = self.store.get_run(self.run_id)
        if status is not None and run is not None and run.status in RESUMABLE_STATUSES:
            self.store.finish_run(self.run_id, status, message)
        lock = self.store.get_lock(SERVICE)
        if lock is not None and lock.run_id == self.run_id:
            self.store.release_lock(SERVICE, self.run_id)
        self.store.close()
        self.world.kill_holder(self.holder.pid)
        self.ended = True


class KernelModel(TrafficMachine):
    def __init__(self) -> None:
        super().__init__()
        self.run: RunProcess | None = None

    def teardown(self) -> None:
        if self.run is not None and not self.run.ended:
            self.run.crash()
        super().teardown()

    def _patching_side(self) -> Side | None:
        if self.run is not None and self.run.in_patch:
            side: Side = self.run.plan["standby"]
            return side
        return None

    def _step(self, crash: str | None, body: Any, meanwhile: tuple[str, str] | None = None
              ) -> None:
        """One step of the run's process; a crash there kills the process (no cleanup);
        `meanwhile` (failpoint, command): an operator's command runs when the run is there."""
        assert self.run is not None
        self.world.clock.advance(1)
        action = None
        if meanwhile is not None:
            point, command = meanwhile
            if not (point.startswith("traffic:") and command.startswith("reimage")):
                # (a host re-imaged after the flip's host recheck: no check can see that)
                action = (point, lambda: self._operator(command))
        with at_failpoints(crash, action):
            try:
                body()
            except SimulatedCrash:
                self.run.crash()

    def _run_alive(self) -> bool:
        return self.run is not None and not self.run.ended

    # -- operators --------------------------------------------------------------------------
    # -- the rollout's process ------------------------------------------------------------
    @precondition(lambda self: not self._run_alive())
    @rule(level=st.sampled_from(LEVELS))
    def rollout_start(self, level: str) -> None:
        if self._run_alive() or self._resumable_run() is not None:
            return  # the CLI says: resume it (or abort it) first
        self.count += 1
        self.run = RunProcess(self.world, f"r{self.count}")
        self.run.start(level)

    @precondition(lambda self: self._run_alive())
    @rule(ok=st.booleans(), crash=run_crash_points, meanwhile=meanwhile)
    def rollout_step(self, ok: bool, crash: str | None,
                     meanwhile: tuple[str, str] | None) -> None:
        if self.run is None or self.run.ended:
            return
        run = self.run
        self._step(crash, lambda: run.advance(ok), meanwhile)

    @precondition(lambda self: self._run_alive())
    @rule(step=st.sampled_from(STEPS), ok=st.booleans(), crash=run_crash_points,
          meanwhile=meanwhile)
    def rollout_until(self, step: str, ok: bool, crash: str | None,
                      meanwhile: tuple[str, str] | None) -> None:
        """The run goes well until `step`, which then runs as told (a shortcut to the
        deep states)."""
        if self.run is None or self.run.ended:
            return
        run = self.run
        for _ in range(len(STEPS) + 1):
            if run.ended or run.next_step() in (step, "finish"):
                break
            self._step(None, lambda: run.advance(True))
        if not run.ended:
            self._step(crash, lambda: run.advance(ok), meanwhile)

    @precondition(lambda self: self._run_alive())
    @rule()
    def rollout_crash(self) -> None:
        if self.run is not None and not self.run.ended:
            self.run.crash()

    @precondition(lambda self: not self._run_alive())
    @rule(crash=run_crash_points)
    def rollout_resume(self, crash: str | None) -> None:
        run_id = self._resumable_run()
        if run_id is None or self._run_alive():
            return
        self.run = RunProcess(self.world, run_id)
        run = self.run
        self._step(crash, run.resume)

    # -- invariants -------------------------------------------------------------------------
    @invariant()
    def check_world(self) -> None:
        alive = self._run_alive()
        self.world.check(run_alive=alive, aborted_run_alive=alive)


TestKernelModel = KernelModel.TestCase
TestKernelModel.settings = model_settings("BLUEGREEN_MODEL_EXAMPLES", 150, 40)



class KernelModelOnPostgres(KernelModel):
    """The same machine on the PostgreSQL backend (advisory locks, the audit head's row
    lock, sessions that end with a crashed process); `state_url` is set by the fixture
    below. Fewer examples than SQLite's: every step is a few round trips to the server."""

    def __init__(self) -> None:
        assert self.state_url is not None, "the PostgreSQL database fixture did not run"
        super().__init__()
        assert type(self.world.observer).__name__ == "PostgresStateStore"


@pytest.fixture(scope="module", autouse=True)
def _postgres_for_the_model() -> Iterator[None]:
    with postgres.throwaway_database() as url:
        KernelModelOnPostgres.state_url = postgres.migrated(url)
        yield
        KernelModelOnPostgres.state_url = None


TestKernelModelOnPostgres = KernelModelOnPostgres.TestCase
TestKernelModelOnPostgres.settings = model_settings("BLUEGREEN_MODEL_PG_EXAMPLES", 14, 30)


# -- the interleavings of issue 10, as fixed examples of the same machine ------------------

R = "rollout_until"
SCENARIOS: dict[str, list[tuple[str, dict[str, Any]]]] = {
    # 1: green verified by an earlier run; a new rollout patches green; rollback
    "rollback_while_patching": [
        ("rollout_start", {"level": "L1"}),
        (R, {"step": "bake", "ok": True, "crash": None, "meanwhile": None}),
        ("rollout_step", {"ok": True, "crash": None, "meanwhile": None}),  # done: green live
        ("rollout_start", {"level": "L2"}),
        (R, {"step": "bake", "ok": True, "crash": None, "meanwhile": None}),
        ("rollout_step", {"ok": True, "crash": None, "meanwhile": None}),  # blue live, L2
        ("rollout_start", {"level": "L1"}),
        (R, {"step": "patch", "ok": True, "crash": None, "meanwhile": None}),  # Ansible on green
        ("rollback", {"to": None, "crash": None}),
        ("rollout_step", {"ok": True, "crash": None, "meanwhile": None}),
        ("flip", {"to": "green", "force": False, "crash": None}),
    ],
    # 2: the bake's automatic rollback, then rollback and flip to the side that failed
    "rollback_after_auto_rollback": [
        ("rollout_start", {"level": "L1"}),
        (R, {"step": "bake", "ok": False, "crash": None, "meanwhile": None}),
        ("rollback", {"to": None, "crash": None}),
        ("flip", {"to": "green", "force": False, "crash": None}),
    ],
    # 3: set map ok, then persisting fails / the confirming request fails; a reload
    "half_done_flips": [
        ("router_fault", {"fault": "persist"}),
        ("rollout_start", {"level": "L1"}),
        (R, {"step": "flip", "ok": True, "crash": None, "meanwhile": None}),  # not persisted
        ("flip", {"to": "green", "force": False, "crash": None}),  # the hint: repairs it
        ("router_fault", {"fault": "confirm"}),
        ("rollback", {"to": None, "crash": None}),  # not confirmed; the second one repairs
        ("router_fault", {"fault": "lost_reply"}),
        ("flip", {"to": "green", "force": True, "crash": None}),
        ("router_reload", {}),  # the flip was not persisted: traffic back on blue
        ("status", {"crash": None}),
        ("adopt", {}),
    ],
    # 6: kill -9 inside the automatic rollback (router flipped back, store not yet)
    "crash_inside_auto_rollback": [
        ("rollout_start", {"level": "L1"}),
        (R, {"step": "bake", "ok": False, "crash": "traffic:router", "meanwhile": None}),
        ("rollout_resume", {"crash": None}),
        ("flip", {"to": "green", "force": False, "crash": None}),
    ],
    # 8: rollback --to LIVE during a rollout; a rollback while the run's flip is between
    # its abort check and the kernel, and while the kernel holds the lock
    "rollback_to_live_and_racing_the_runs_flip": [
        ("rollout_start", {"level": "L1"}),
        (R, {"step": "verify", "ok": True, "crash": None, "meanwhile": None}),
        ("rollback", {"to": "blue", "crash": None}),
        ("rollout_step", {"ok": True, "crash": None, "meanwhile": None}),
        ("rollout_start", {"level": "L1"}),
        (R, {"step": "flip", "ok": True, "crash": None,
             "meanwhile": ("flip:begin", "rollback")}),
        ("rollout_start", {"level": "L2"}),
        (R, {"step": "flip", "ok": True, "crash": None,
             "meanwhile": ("traffic:router", "rollback")}),
        ("rollback", {"to": None, "crash": None}),
    ],
    # 11, 12: a store that disagrees; hosts re-imaged after their verification
    "disagreeing_store_and_reimaged_hosts": [
        ("rollout_start", {"level": "L1"}),
        (R, {"step": "bake", "ok": True, "crash": None, "meanwhile": None}),
        ("rollout_step", {"ok": True, "crash": None, "meanwhile": None}),
        ("rollout_start", {"level": "L2"}),
        (R, {"step": "bake", "ok": True, "crash": None, "meanwhile": None}),
        ("rollout_step", {"ok": True, "crash": None, "meanwhile": None}),
        ("reimage", {"side": "green"}),
        ("flip", {"to": "green", "force": False, "crash": None}),
        ("router_fault", {"fault": "persist"}),
        ("rollback", {"to": None, "crash": None}),
        ("router_reload", {}),
        ("flip", {"to": "green", "force": False, "crash": None}),
        ("rollout_start", {"level": "L1"}),
        ("rollout_step", {"ok": True, "crash": None, "meanwhile": None}),
    ],
    # a flip not persisted, a rollout's precheck that cannot persist it either, then a
    # reload: no patch of the side that takes traffic again
    "no_patch_after_a_reload_of_an_unpersisted_flip": [
        ("verify", {"side": "green", "ok": True}),
        ("router_fault", {"fault": "persist"}),
        ("flip", {"to": "green", "force": False, "crash": None}),
        ("router_fault", {"fault": "persist"}),
        ("rollout_start", {"level": "L1"}),
        ("rollout_step", {"ok": True, "crash": None, "meanwhile": None}),  # precheck
        ("router_reload", {}),
        ("rollout_step", {"ok": True, "crash": None, "meanwhile": None}),  # patch: refused
    ],
    # a crash at every kernel failpoint of an operator's flip, then the next command
    "crashes_at_each_kernel_failpoint": [
        ("verify", {"side": "green", "ok": True}),
        ("flip", {"to": "green", "force": False, "crash": "traffic:intent"}),
        ("status", {"crash": None}),
        ("flip", {"to": "green", "force": False, "crash": "traffic:router"}),
        ("rollback", {"to": None, "crash": "traffic:router"}),
        ("status", {"crash": None}),
        ("flip", {"to": "blue", "force": True, "crash": "traffic:recorded"}),
        ("rollback", {"to": None, "crash": None}),
    ],
    # issue 20, 4 and 5: a flip not persisted is persisted again by the next command's
    # reconciliation (a rollout's precheck), so a reload keeps it; a reload between `set
    # map` and persisting (the file then routes to green, memory to blue) is no move, the
    # live side is persisted again, or (that failing too) named until the next command
    "the_next_command_persists_the_live_side_again": [
        ("verify", {"side": "green", "ok": True}),
        ("router_fault", {"fault": "persist"}),
        ("flip", {"to": "green", "force": False, "crash": None}),
        ("rollout_start", {"level": "L1"}),
        ("rollout_step", {"ok": True, "crash": None, "meanwhile": None}),  # precheck
        ("router_reload", {}),  # traffic stays on green: the precheck persisted it
        ("rollout_step", {"ok": True, "crash": None, "meanwhile": None}),  # patch blue
        ("rollout_step", {"ok": True, "crash": None, "meanwhile": None}),
        ("rollout_step", {"ok": True, "crash": None, "meanwhile": None}),  # verify blue
        ("router_fault", {"fault": "reload"}),
        ("rollout_step", {"ok": True, "crash": None, "meanwhile": None}),  # flip: not moved
        ("router_fault", {"fault": "reload"}),
        ("router_fault", {"fault": "persist"}),
        ("flip", {"to": "blue", "force": False, "crash": None}),  # not moved, not persisted
        ("router_reload", {}),  # the file said blue: traffic on blue, the store says green
        ("status", {"crash": None}),  # StateMismatch, named
        ("adopt", {}),
    ],
    # issue 20, 11: the window closes while the run's flip waits for the traffic lock; it
    # opens again and the resumed run flips; the clock stepped back meanwhile
    "window_closes_while_the_flip_waits_for_the_lock": [
        ("rollout_start", {"level": "L1"}),
        (R, {"step": "flip", "ok": True, "crash": None,
             "meanwhile": ("traffic:locked", "window_closes")}),
        ("clock_steps_back", {}),
        ("maintenance_window", {"open_": True}),
        ("rollout_resume", {"crash": None}),
        ("rollout_step", {"ok": True, "crash": None, "meanwhile": None}),
    ],
    # issue 20, 1: a quarantine of the standby while the run's flip is on its way (it
    # cannot come between the flip's gate and its record: the traffic lock); 3: during the
    # patch; the way out is a patch begun after it (rebuild) and a passing gate
    "quarantine_races_the_runs_flip_and_patch": [
        ("rollout_start", {"level": "L1"}),
        (R, {"step": "flip", "ok": True, "crash": None,
             "meanwhile": ("flip:begin", "quarantine_green")}),
        ("rollout_start", {"level": "L1"}),
        (R, {"step": "flip", "ok": True, "crash": None,
             "meanwhile": ("traffic:intent", "quarantine_green")}),  # waits: LockHeld
        ("rollout_start", {"level": "L2"}),
        (R, {"step": "patch", "ok": True, "crash": None, "meanwhile": None}),
        ("quarantine", {"side": "green", "crash": None}),
        ("rollout_step", {"ok": True, "crash": None, "meanwhile": None}),  # aborted
        ("flip", {"to": "blue", "force": False, "crash": None}),
    ],
    # issue 20, 2: quarantine of the live side killed between the router and the record,
    # then a rollback (watch --quarantine racing an operator): the next command records
    # both the flip and the mark; the rollback is refused
    "quarantine_live_killed_then_rollback": [
        ("verify", {"side": "green", "ok": True}),
        ("quarantine", {"side": "blue", "crash": "traffic:router"}),
        ("rollback", {"to": None, "crash": None}),
        ("watch_quarantine", {"crash": None}),  # green live: blue may not take traffic
        ("rebuild", {"side": "blue", "ok": True}),
        ("flip", {"to": "blue", "force": False, "crash": None}),
    ],
    # issue 20, 8: verified, the flip deferred by the window; a rebuild changed the side
    # (its own gate passed); the resumed run's flip is refused
    "resume_after_a_rebuild_of_the_verified_side": [
        ("rollout_start", {"level": "L1"}),
        ("maintenance_window", {"open_": False}),
        (R, {"step": "flip", "ok": True, "crash": None, "meanwhile": None}),  # deferred
        ("maintenance_window", {"open_": True}),
        ("rebuild", {"side": "green", "ok": True}),
        ("rollout_resume", {"crash": None}),
        ("rollout_step", {"ok": True, "crash": None, "meanwhile": None}),  # refused
    ],
}


ENDS: dict[str, tuple[Side, dict[Side, str]]] = {
    "rollback_while_patching": ("blue", {"green": "patching"}),
    "rollback_after_auto_rollback": ("blue", {"green": "failed_live"}),
    "half_done_flips": ("blue", {"green": "failed_live"}),
    "crash_inside_auto_rollback": ("blue", {"green": "failed_live"}),
    "rollback_to_live_and_racing_the_runs_flip": ("blue", {"green": "failed_live"}),
    "disagreeing_store_and_reimaged_hosts": ("green", {"green": "verified"}),
    "crashes_at_each_kernel_failpoint": ("blue", {"green": "failed_live"}),
    "no_patch_after_a_reload_of_an_unpersisted_flip": ("blue", {"blue": "untouched"}),
    "window_closes_while_the_flip_waits_for_the_lock": ("green", {"green": "verified"}),
    "quarantine_races_the_runs_flip_and_patch": ("blue", {"green": "quarantined"}),
    "quarantine_live_killed_then_rollback": ("blue", {"blue": "verified",
                                                      "green": "verified"}),
    "resume_after_a_rebuild_of_the_verified_side": ("blue", {"green": "verified"}),
    "the_next_command_persists_the_live_side_again": ("blue", {"blue": "verified"}),
}
"""Where each scenario leaves traffic (router memory) and side states."""


@pytest.fixture(scope="module")
def pg_database() -> Iterator[str]:
    with postgres.throwaway_database() as url:
        yield postgres.migrated(url)


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
@pytest.mark.parametrize("name", sorted(SCENARIOS))
def test_issue_10_interleavings(name: str, backend: str, request: pytest.FixtureRequest) -> None:
    """Each interleaving on both backends (PostgreSQL: advisory locks, the head row lock)."""
    url = request.getfixturevalue("pg_database") if backend == "postgresql" else None
    machine = type("KernelModelOn", (KernelModel,), {"state_url": url})()
    store_kind = type(machine.world.observer).__name__
    assert store_kind == ("PostgresStateStore" if url else "SQLiteStateStore"), store_kind
    try:
        machine.check_world()
        for rule_name, arguments in SCENARIOS[name]:
            getattr(machine, rule_name)(**arguments)
            machine.check_world()
        live, states = ENDS[name]
        assert machine.world.router.memory[SERVICE] == live
        for side, state in states.items():
            record = machine.world.observer.get_side(SERVICE, side)
            assert (record.state if record else "untouched") == state, side
    finally:
        machine.teardown()
