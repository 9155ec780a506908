"""Model-based test of the real rollout engine (orchestrator/rollout/) on the safety
kernel: the same operators, faults and invariants as the kernel's model
(tests/unit/traffic/test_kernel_model.py), with `Rollout.start` / `Rollout.resume` as
processes that may crash at any failpoint (their lock's holder dies with them) and be
resumed later, Ansible (FakePatcher) and the probes (FakeGate) answering from the truth
about the hosts, an operator's command interleaved at any failpoint or while Ansible runs,
the bake degrading under traffic, and a campaign's maintenance window (`may_flip`): a run
deferred outside it is resumed by its campaign when it opens.

CI runs a fixed, derandomized set; `BLUEGREEN_MODEL_EXAMPLES=N` explores (README).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import event
from hypothesis import strategies as st
from hypothesis.errors import InvalidArgument
from hypothesis.stateful import invariant, precondition, rule

from orchestrator.config.loaded import parse_package_arg
from orchestrator.errors import BluegreenError, StateError
from orchestrator.rollout.runner import Rollout
from orchestrator.rollout.steps.patch import patch_level
from orchestrator.routers.base import TrafficCounters
from orchestrator.sides import Side
from orchestrator.state import LockHolder, SQLiteStateStore, StateStore
from orchestrator.state.copy import copy_store
from orchestrator.state.registry import parse_state_url, sqlite_location
from orchestrator.testing import (
    FakeGate,
    FakePatcher,
    SimulatedCrash,
    at_failpoints,
    fake_config,
    fake_tools,
)
from orchestrator.traffic.unlock import Unlocked, unlock
from tests.support.model import SERVICE, Host, World, model_settings
from tests.support.model_rules import KERNEL_POINTS, OPERATOR_COMMANDS, TrafficMachine

LEVELS = ("demo-web=1.0.1", "demo-web=1.0.2")
STEPS = ("precheck", "patch", "verify", "flip", "bake")
RUN_POINTS = (
    *(f"{p}:rollout.flip" for p in KERNEL_POINTS),
    *(f"{p}:rollout.auto-rollback" for p in KERNEL_POINTS),
    *(f"{s}:{p}" for s in STEPS for p in ("begin", "end")),
)
DURING_PATCH = "patch:during"
RUN_COMMANDS = ("unlock",)
"""Commands that end a run from another process without moving traffic: `unlock` (and
`campaign abort`, which does the same to its child) marks it aborted and frees its lock
only when its holder is gone."""

run_crash = st.one_of(st.none(), st.sampled_from(RUN_POINTS))
meanwhile = st.one_of(st.none(), st.tuples(st.sampled_from((*RUN_POINTS, DURING_PATCH)),
                                           st.sampled_from((*OPERATOR_COMMANDS,
                                                            *RUN_COMMANDS))))


class ModelPatcher(FakePatcher):
    """Ansible, as the hosts see it: half patched while it runs, the level when it ends."""

    world: World
    level: str = ""
    running_on: Side | None = None

    def __call__(self, config: object, service: str, side: Side, packages: object, *,
                 on_event: Any, cancel: Any, fleet: object = None) -> Any:
        old = self.world.hosts[side]
        self.world.ansible_starts(side, self.level)
        self.running_on: Side | None = side
        try:
            patched = super().__call__(config, service, side, packages, on_event=on_event,
                                       cancel=cancel)
        finally:
            self.running_on = None
        if patched.ok:
            self.world.hosts_changed(side, Host(self.level, False, old.fingerprint),
                                     patched=True)
        return patched


class ModelGate(FakeGate):
    """The probes: a side passes only if its hosts really run the level asked for."""

    world: World
    passes: bool = True

    def __call__(self, config: object, store: Any, service: str, side: Side, *, actor: str,
                 packages: object = (), advisories: object = (), patch_level: str | None = None,
                 expected_generation: int | None = None, fleet: object = None) -> Any:
        truth = self.world.hosts[side]
        self.verdicts[(service, side)] = (self.passes and not truth.partial
                                          and truth.level == patch_level)
        self.fingerprints = truth.fingerprints(side)
        return super().__call__(config, store, service, side, actor=actor, packages=packages,
                                advisories=advisories, patch_level=patch_level,
                                expected_generation=expected_generation)


class RolloutModel(TrafficMachine):
    def __init__(self) -> None:
        super().__init__()
        self.config = fake_config(self.tmp, bake_seconds=0.03)
        self.patcher: ModelPatcher | None = None
        self.run_store: StateStore | None = None
        """The store (connection) of the rollout's process while it runs."""

    # -- a rollout's process ----------------------------------------------------------------
    @contextlib.contextmanager
    def _holder(self) -> Iterator[LockHolder]:
        """The run's process: its run lock names a pid that dies when the process does."""
        holder = self.world.spawn_holder()
        current = LockHolder.current
        LockHolder.current = classmethod(lambda cls: holder)  # type: ignore[assignment,method-assign]
        try:
            yield holder
        finally:
            LockHolder.current = current  # type: ignore[method-assign]
            self.world.kill_holder(holder.pid)

    def _run(self, body: Any, level: str, *, patch_ok: bool, verify_ok: bool, bake_ok: bool,
             crash: str | None, meanwhile: tuple[str, str] | None) -> None:
        patcher = ModelPatcher()
        patcher.world, patcher.level, patcher.running_on = self.world, level, None
        self.patcher = patcher
        if not patch_ok:
            patcher.fail = {(SERVICE, "blue"), (SERVICE, "green")}
        gate = ModelGate()
        gate.world, gate.passes = self.world, verify_ok
        action = None
        if meanwhile is not None:
            point, command = meanwhile
            if point == DURING_PATCH:
                patcher.during = lambda _service, _side: self._operator(command)
            elif point.startswith("traffic:") and command.startswith("reimage"):
                pass  # after the flip's host recheck: no check can see that (nor one after)
            else:
                action = (point, lambda: self._operator(command))
        reads = {"n": 0}

        def count(service: str, side: Side) -> TrafficCounters | None:
            if bake_ok:
                return None
            reads["n"] += 1  # the bake's baseline, then 5xx pile up
            return TrafficCounters(0, 0) if reads["n"] == 1 else TrafficCounters(100, 60)

        self.world.router.count = count
        self.world.clock.advance(1)
        with self._holder(), self.world.process() as store, at_failpoints(crash, action):
            self.run_store = store
            rollout = Rollout(self.config, store, self.world.router, actor="ci",
                              tools=fake_tools(patcher, gate, recheck=self.world.recheck),
                              may_flip=self._may_flip)
            try:
                body(store, rollout)
                self._event("run done")
            except SimulatedCrash as exc:
                self._event(f"run crashed at {exc}")
            except BluegreenError as exc:
                self._event(f"run ended: {type(exc).__name__}")
            finally:
                self.run_store = None
        self.world.router.count = None
        self._run_ended()

    def _run_ended(self) -> None:
        """After the rollout's process ended (the PostgreSQL model checks what a holder
        that lost its session did meanwhile)."""

    def _event(self, text: str) -> None:
        """For `--hypothesis-show-statistics` (the fixed scenarios run outside hypothesis)."""
        with contextlib.suppress(InvalidArgument):
            event(text)

    def _may_flip(self, service: str) -> str | None:
        return None if self.world.window_open else "outside the maintenance window"

    def _patching_side(self) -> Side | None:
        patcher = self.patcher
        return patcher.running_on if patcher is not None else None

    def _operator(self, command: str) -> None:
        if command == "unlock":
            self.unlock()
        else:
            super()._operator(command)

    def _running_run(self) -> str | None:
        runs = [r for r in self.world.observer.list_runs(service=SERVICE)
                if r.status == "running"]
        return runs[-1].run_id if runs else None

    # -- rules --------------------------------------------------------------------------------
    @rule(level=st.sampled_from(LEVELS), patch_ok=st.booleans(), verify_ok=st.booleans(),
          bake_ok=st.booleans(), crash=run_crash, meanwhile=meanwhile)
    def rollout_start(self, level: str, patch_ok: bool, verify_ok: bool, bake_ok: bool,
                      crash: str | None, meanwhile: tuple[str, str] | None) -> None:
        if self._resumable_run() is not None:
            return  # the CLI says: resume it (or abort it) first

        def start(store: SQLiteStateStore, rollout: Rollout) -> None:
            rollout.start(SERVICE, [parse_package_arg(level)])

        self._run(start, level, patch_ok=patch_ok, verify_ok=verify_ok, bake_ok=bake_ok,
                  crash=crash, meanwhile=meanwhile)

    @precondition(lambda self: self._resumable_run() is not None)
    @rule(patch_ok=st.booleans(), verify_ok=st.booleans(), bake_ok=st.booleans(),
          crash=run_crash, meanwhile=meanwhile)
    def rollout_resume(self, patch_ok: bool, verify_ok: bool, bake_ok: bool,
                       crash: str | None, meanwhile: tuple[str, str] | None) -> None:
        """`bluegreen resume` (or the campaign resuming its deferred child)."""
        run_id = self._resumable_run()
        assert run_id is not None
        run = self.world.observer.get_run(run_id)
        assert run is not None
        level = patch_level([parse_package_arg(p) for p in run.params["packages"]], False)

        def resume(store: SQLiteStateStore, rollout: Rollout) -> None:
            again = store.get_run(run_id)
            assert again is not None
            rollout.resume(again)

        self._run(resume, level, patch_ok=patch_ok, verify_ok=verify_ok, bake_ok=bake_ok,
                  crash=crash, meanwhile=meanwhile)

    @precondition(lambda self: self._running_run() is not None)
    @rule(level=st.sampled_from(LEVELS), crash=run_crash, meanwhile=meanwhile)
    def rollout_takes_over(self, level: str, crash: str | None,
                           meanwhile: tuple[str, str] | None) -> None:
        """A new rollout while a killed one was never resumed (issue 20, 7): it takes the
        dead holder's lock over with a new epoch, and the old run is abandoned."""
        stale = self._running_run()

        def start(store: SQLiteStateStore, rollout: Rollout) -> None:
            rollout.start(SERVICE, [parse_package_arg(level)])

        self._run(start, level, patch_ok=True, verify_ok=True, bake_ok=True, crash=crash,
                  meanwhile=meanwhile)
        old = self.world.observer.get_run(stale or "")
        assert old is not None and old.status in ("abandoned", "aborted"), old

    @rule()
    def unlock(self) -> None:
        """`bluegreen unlock web` (or `campaign abort` of the run's campaign)."""
        before = self.world.observer.get_lock(SERVICE)
        out = self._op(None, lambda store: unlock(store, SERVICE, "model", "op"))
        after = self.world.observer.get_lock(SERVICE)
        if before is not None and not before.holder_is_gone():
            assert after == before, f"a live holder's lock was freed: {out}"  # never taken
        elif isinstance(out, Unlocked):
            assert after is None, out

    @rule()
    def state_copy(self) -> None:
        """`bluegreen state copy` into a new store: refused, nothing written, while the
        source is in use (a run that may act or resume, a pending flip, a live lock)."""
        observer = self.world.observer
        svc = observer.get_service(SERVICE)
        lock = observer.get_lock(SERVICE)
        busy = (self._resumable_run() is not None
                or (svc is not None and svc.pending_flip is not None)
                or (lock is not None and not lock.holder_is_gone()))
        self.count += 1
        target = self.tmp / f"copy-{self.count}" / "state.db"
        source = (sqlite_location(self.world.db) if self.world.state_url is None
                  else parse_state_url(self.world.state_url))
        key = (self.world.db.with_name("audit.key") if self.world.state_url is None
               else self.tmp / "audit.key")
        if not key.exists():
            return  # nothing was ever recorded: no chain to copy
        try:
            copy_store(source, sqlite_location(target), audit_key_file=key, actor="op")
        except StateError as exc:
            assert busy and "in use" in exc.message, exc
            assert not target.exists(), "a refused copy wrote its target"
            return
        assert not busy, "a store in use was copied"
        with SQLiteStateStore(target, audit_key_file=key) as copied:
            assert copied.verify_audit().ok

    @invariant()
    def check_world(self) -> None:
        self.world.check(run_alive=False, aborted_run_alive=False)
        self._one_run_acts()

    def _one_run_acts(self) -> None:
        """At most one run acts on the service: at most one is running, and no run wrote
        anything (journal, patch records, flips) after another process ended it (aborted,
        abandoned): a superseded epoch records nothing."""
        observer = self.world.observer
        running = [r.run_id for r in observer.list_runs(service=SERVICE)
                   if r.status == "running"]
        assert len(running) <= 1, f"runs acting on {SERVICE} at once: {running}"
        records = observer.audit_records(SERVICE)
        ended: dict[str, int] = {}
        for rec in records:
            if rec.command == "run.abandon":
                ended.setdefault(str(rec.after["run_id"]), rec.seq)
            elif rec.command == "run.finish" and rec.result == "aborted":
                ended.setdefault(str(rec.before["run_id"]), rec.seq)
        for rec in records:
            if rec.result in ("recovered", "cancelled"):
                continue  # another command completing or cancelling the run's crashed flip
            if rec.command.startswith("journal."):
                run_id = str(rec.after.get("run_id"))
            else:
                run_id = (rec.reason or "").removeprefix("run ").split(":")[0]
            if run_id in ended and rec.seq > ended[run_id]:
                raise AssertionError(f"run {run_id} wrote {rec.command} (seq {rec.seq}) after "
                                     f"it was ended (seq {ended[run_id]})")


TestRolloutModel = RolloutModel.TestCase
TestRolloutModel.settings = model_settings("BLUEGREEN_MODEL_EXAMPLES", 120, 30)


# -- the rollout's interleavings of issue 10, as fixed examples of the same machine ----------


def _start(level: str = LEVELS[0], *, patch_ok: bool = True, verify_ok: bool = True,
           bake_ok: bool = True, crash: str | None = None,
           meanwhile: tuple[str, str] | None = None) -> tuple[str, dict[str, Any]]:
    return ("rollout_start", {"level": level, "patch_ok": patch_ok, "verify_ok": verify_ok,
                              "bake_ok": bake_ok, "crash": crash, "meanwhile": meanwhile})


def _resume(*, bake_ok: bool = True, crash: str | None = None,
            meanwhile: tuple[str, str] | None = None) -> tuple[str, dict[str, Any]]:
    return ("rollout_resume", {"patch_ok": True, "verify_ok": True, "bake_ok": bake_ok,
                               "crash": crash, "meanwhile": meanwhile})


SCENARIOS: dict[str, tuple[list[tuple[str, dict[str, Any]]], Side, dict[Side, str], str]] = {
    # 7: a campaign child outside its window is deferred; its resume flips only in it
    "deferred_by_the_window": ([
        ("maintenance_window", {"open_": False}),
        _start(),
        _resume(),
        ("maintenance_window", {"open_": True}),
        _resume(),
    ], "green", {"green": "verified"}, "done"),
    # 1: rollback while Ansible runs on the standby: the run stops, traffic stays
    "rollback_while_ansible_runs": ([
        _start(meanwhile=(DURING_PATCH, "rollback")),
        ("flip", {"to": "green", "force": False, "crash": None}),
    ], "blue", {"green": "patching"}, "aborted"),
    # 8: a rollback between the run's abort check and its flip; one while the kernel
    # holds the lock for the run's flip (it waits: here it gives up at once)
    "rollback_racing_the_runs_flip": ([
        _start(meanwhile=("flip:begin", "rollback")),
        _start(meanwhile=("traffic:router:rollout.flip", "rollback")),
        ("rollback", {"to": None, "crash": None}),
    ], "blue", {"green": "failed_live"}, "done"),
    # 6: kill -9 inside the bake's automatic rollback, then resume
    "crash_inside_the_auto_rollback": ([
        _start(bake_ok=False, crash="traffic:router:rollout.auto-rollback"),
        _resume(),
        ("rollback", {"to": None, "crash": None}),
        ("flip", {"to": "green", "force": False, "crash": None}),
    ], "blue", {"green": "failed_live"}, "rolled_back"),
    # a flip by hand while the auto rollback holds the traffic lock
    "flip_while_the_auto_rollback_holds_the_lock": ([
        _start(bake_ok=False, meanwhile=("traffic:intent:rollout.auto-rollback", "flip_green")),
    ], "blue", {"green": "failed_live"}, "rolled_back"),
    # issue 20, 7: a run killed after its flip, never resumed; the next rollout takes its
    # lock over (the killed run is abandoned) and flips back; a rollback still goes back
    "takeover_after_a_kill": ([
        _start(crash="flip:end"),
        ("rollout_takes_over", {"level": LEVELS[1], "crash": None, "meanwhile": None}),
        ("rollback", {"to": None, "crash": None}),
    ], "green", {"blue": "failed_live", "green": "verified"}, "done"),
    # issue 20, 6: `unlock` / `campaign abort` while Ansible runs: the live holder keeps its
    # lock, its run is aborted and stops (Ansible cancelled), nothing it writes later counts
    "unlock_while_ansible_runs": ([
        _start(meanwhile=(DURING_PATCH, "unlock")),
    ], "blue", {"green": "patching"}, "aborted"),
    # ... and right before its patch step: its late begin_patch is refused (green untouched)
    "unlock_before_the_patch_is_recorded": ([
        _start(meanwhile=("patch:begin", "unlock")),
    ], "blue", {"green": "untouched"}, "aborted"),
    # issue 20, 9: a store with a killed run is not copied; once resumed to its end it is
    "state_copy_of_a_store_in_use": ([
        _start(crash="patch:end"),
        ("state_copy", {}),
        _resume(),
        ("state_copy", {}),
    ], "green", {"green": "verified"}, "done"),
    # a crash at every step, each resumed
    "crash_at_every_step_then_resume": ([
        _start(crash="precheck:end"),
        _resume(crash="patch:end"),
        _resume(crash="traffic:router:rollout.flip"),
        _resume(crash="bake:begin"),
        _resume(),
    ], "green", {"green": "verified", "blue": "untouched"}, "done"),
    # issue 20, 3: a quarantine while Ansible runs on the standby stands (the run stops);
    # the way out: a rebuild (a patch begun after it) and its passing gate
    "quarantine_while_ansible_runs": ([
        _start(meanwhile=(DURING_PATCH, "quarantine_green")),
        ("flip", {"to": "green", "force": False, "crash": None}),  # refused: quarantined
        ("rebuild", {"side": "green", "ok": True}),
        ("flip", {"to": "green", "force": False, "crash": None}),
    ], "green", {"green": "verified"}, "aborted"),
    # issue 20, 8: verified, deferred by the window; a rebuild changed the side (its own
    # gate passed); the resumed run does not flip to it
    "resume_after_a_rebuild_of_the_verified_side": ([
        ("maintenance_window", {"open_": False}),
        _start(),
        ("maintenance_window", {"open_": True}),
        ("rebuild", {"side": "green", "ok": True}),
        _resume(),
    ], "blue", {"green": "verified"}, "failed"),
}


def play(machine: RolloutModel, steps: list[tuple[str, dict[str, Any]]], live: Side,
         states: dict[Side, str]) -> list[str]:
    """Run `steps` (rule, arguments) on `machine`, the invariants after each; check where
    traffic and the sides end. Returns the statuses of the service's runs, oldest first."""
    try:
        machine.check_world()
        for rule_name, arguments in steps:
            getattr(machine, rule_name)(**arguments)
            machine.check_world()
        assert machine.world.router.memory[SERVICE] == live
        for side, state in states.items():
            record = machine.world.observer.get_side(SERVICE, side)
            assert (record.state if record else "untouched") == state, side
        return [r.status for r in machine.world.observer.list_runs(service=SERVICE)]
    finally:
        machine.teardown()


@pytest.mark.parametrize("name", sorted(SCENARIOS))
def test_rollout_interleavings(name: str) -> None:
    steps, live, states, last_run = SCENARIOS[name]
    statuses = play(RolloutModel(), steps, live, states)
    assert not {"running", "deferred"} & set(statuses), statuses  # nothing left to resume
    assert statuses[-1] == last_run, statuses
