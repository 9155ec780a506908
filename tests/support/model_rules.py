"""The hypothesis rules the model-based tests share (tests/unit/traffic/test_kernel_model.py,
tests/unit/rollout/test_rollout_model.py): operators' commands, each in its own process,
the load balancer's faults and the hosts' changes. See tests/support/model.py for the world
and its invariants."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path
from typing import Any

from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, precondition, rule

from orchestrator.errors import (
    BadInput,
    BluegreenError,
    FlipIncomplete,
    LockHeld,
    OutsideWindow,
    RouterError,
    StateMismatch,
    VerificationFailed,
)
from orchestrator.routers.base import Exposure
from orchestrator.sides import SIDES, Side, other_side
from orchestrator.state import AuditEntryInput, SQLiteStateStore
from orchestrator.state.models import RESUMABLE_STATUSES
from orchestrator.testing import ExposeFault, RouterFault, SimulatedCrash, crash_at
from orchestrator.traffic import (
    ExposeRequest,
    ExposeResult,
    FlipOutcome,
    FlipRequest,
    expose_traffic,
    move_traffic,
    settle,
)
from orchestrator.traffic.quarantine import QuarantineOutcome, quarantine_side
from orchestrator.traffic.status import adopt
from tests.support.model import SERVICE, Host, World

KERNEL_POINTS = ("traffic:locked", "traffic:intent", "traffic:router", "traffic:recorded")
FAULTS: tuple[RouterFault, ...] = (
    "refuse", "gone_before", "gone_after", "lost_reply", "persist", "confirm", "reload")
OPERATOR_COMMANDS = ("rollback", "flip_blue", "flip_green", "status", "reload", "expose",
                     "reimage_blue", "reimage_green", "window_closes", "window_opens",
                     "clock_steps_back", "quarantine_blue", "quarantine_green",
                     "watch_quarantine")
"""What can happen while another process is somewhere (a failpoint, inside the patch step):
an operator's command (a quarantine too: `watch --quarantine` is the same operation on the
live side), the load balancer reloading its configuration, a host re-imaged, the
maintenance window closing or opening, the clock stepped back (NTP, a VM restored)."""

crash_points = st.one_of(st.none(), st.sampled_from(KERNEL_POINTS))


class TrafficMachine(RuleBasedStateMachine):
    """The rules every model shares: operators' commands (each its own process, crashing
    at a kernel failpoint when told), the load balancer's faults and the hosts' changes.
    Subclasses add the rollout's process and call `self.world.check` as an invariant."""

    state_url: str | None = None
    """Set (a PostgreSQL database) to run the machine on that backend instead of SQLite."""

    def __init__(self) -> None:
        super().__init__()
        # on tmpfs when there is one: the store fsyncs every transaction
        shm = Path("/dev/shm")
        self.tmp = Path(tempfile.mkdtemp(prefix="bluegreen-model-",
                                         dir=shm if shm.is_dir() else None))
        self.world = World(self.tmp, state_url=self.state_url)
        self.count = 0

    def _patching_side(self) -> Side | None:
        """The side Ansible runs on right now, if any (between two rules)."""
        return None

    def teardown(self) -> None:
        self.world.close()
        shutil.rmtree(self.tmp, ignore_errors=True)

    # -- helpers --------------------------------------------------------------------------
    def _op(self, crash: str | None, body: Any) -> Any:
        """One operator command in its own process; a crash at `crash` kills it there."""
        self.world.clock.advance(1)
        with self.world.process() as store:
            with crash_at(*(crash,) if crash else ()):
                try:
                    return body(store)
                except SimulatedCrash:
                    return None
                except BluegreenError as exc:
                    return exc

    def _operator(self, command: str) -> None:
        if command == "rollback":
            self._rollback(None, None)
        elif command in ("flip_blue", "flip_green"):
            self._flip("blue" if command == "flip_blue" else "green", False, None)
        elif command == "reload":
            if not self.world.router.unreachable:
                self.world.router.reload()
        elif command in ("reimage_blue", "reimage_green"):
            self.reimage("blue" if command == "reimage_blue" else "green")
        elif command in ("window_closes", "window_opens"):
            self.maintenance_window(command == "window_opens")
        elif command == "clock_steps_back":
            self.clock_steps_back()
        elif command in ("quarantine_blue", "quarantine_green"):
            self._quarantine("blue" if command == "quarantine_blue" else "green", None)
        elif command == "watch_quarantine":
            self.watch_quarantine(None)
        elif command == "expose":
            self.expose(25, False, None)
        else:
            self.status(None)

    def _resumable_run(self) -> str | None:
        runs = [r for r in self.world.observer.list_runs(service=SERVICE)
                if r.status in RESUMABLE_STATUSES]
        return runs[-1].run_id if runs else None

    def _runs_in_flight(self) -> list[str]:
        return [r.run_id for r in self.world.observer.list_runs(service=SERVICE)
                if r.status in RESUMABLE_STATUSES]

    def _aborted_all(self, before: list[str], outcome: Any) -> None:
        """A rollback or flip that got past its checks aborted every run in flight; one
        that a check refused (the gate, the hosts, the window) aborted none (issue 20,
        14)."""
        if outcome is None or isinstance(outcome, StateMismatch | LockHeld | BadInput):
            return
        now = self._runs_in_flight()
        if isinstance(outcome, VerificationFailed | OutsideWindow):
            gone = [r for r in before if r not in now]
            assert not gone, f"{outcome!r} was refused, yet it aborted {gone}"
            return
        if isinstance(outcome, RouterError) and not isinstance(outcome, FlipIncomplete):
            return  # the router could not be read, had no server UP, or refused the flip
        left = [r for r in before if r in now]
        assert not left, f"{outcome!r} left runs in flight: {left}"

    @rule(to=st.sampled_from(SIDES), force=st.booleans(), crash=crash_points)
    def flip(self, to: Side, force: bool, crash: str | None) -> None:
        self._flip(to, force, crash)

    def _flip(self, to: Side, force: bool, crash: str | None) -> None:
        def body(store: SQLiteStateStore) -> Any:
            return move_traffic(store, self.world.router, FlipRequest(
                service=SERVICE, command="flip", reason="model", actor="op", to=to,
                force=force, abort_in_flight=True, recheck_hosts=self.world.recheck,
                lock_timeout_s=0))

        in_flight = self._runs_in_flight()
        outcome = self._op(crash, body)
        self._aborted_all(in_flight, outcome)
        if outcome is not None and not isinstance(outcome, BaseException):
            self._succeeded(outcome)

    @rule(to=st.one_of(st.none(), st.sampled_from(SIDES)), crash=crash_points)
    def rollback(self, to: Side | None, crash: str | None) -> None:
        self._rollback(to, crash)

    def _rollback(self, to: Side | None, crash: str | None) -> None:
        def body(store: SQLiteStateStore) -> Any:
            return move_traffic(store, self.world.router, FlipRequest(
                service=SERVICE, command="rollback", reason="INC-1", actor="op", to=to,
                abort_in_flight=True, lock_timeout_s=0))

        in_flight = self._runs_in_flight()
        outcome = self._op(crash, body)
        self._aborted_all(in_flight, outcome)
        if outcome is not None and not isinstance(outcome, BaseException):
            self._succeeded(outcome)
        if crash is None and (outcome is None or not isinstance(outcome, BaseException)
                              or isinstance(outcome, FlipIncomplete)):
            self._second_rollback_changes_nothing(to)

    def _second_rollback_changes_nothing(self, to: Side | None) -> None:
        """The same rollback again (a second operator, a second later) changes nothing."""
        router, observer = self.world.router, self.world.observer
        memory = dict(router.memory)
        svc = observer.get_service(SERVICE)
        records = len(observer.audit_records(SERVICE))
        again = self._op(None, lambda store: move_traffic(store, router, FlipRequest(
            service=SERVICE, command="rollback", reason="INC-1 (second operator)", actor="op2",
            to=to, abort_in_flight=True, lock_timeout_s=0)))
        after = observer.get_service(SERVICE)
        assert router.memory == memory, f"a second rollback moved traffic: {again}"
        assert (after.live_side if after else None) == (svc.live_side if svc else None)
        if not isinstance(again, BaseException):
            assert not again.changed, again
        new = [r for r in observer.audit_records(SERVICE)[records:]
               if r.command == "rollback" and r.result != "started"]
        assert not new, f"a second rollback recorded a flip: {new}"

    def _succeeded(self, outcome: FlipOutcome) -> None:
        """A flip (or repair) that reported success: traffic is there, persisted, recorded."""
        if not (outcome.changed or outcome.repaired):
            return
        to = outcome.to_side
        router, svc = self.world.router, self.world.observer.get_service(SERVICE)
        assert router.memory[SERVICE] == router.persisted[SERVICE] == to
        assert svc is not None and svc.live_side == to and svc.pending_flip is None
        # a rollback from a step whose taking back was not persisted says so (its message)
        exposure_problem = (svc.flip_problem or "").startswith("exposure not persisted")
        assert svc.flip_problem is None or (exposure_problem and "may bring it back" in
                                            outcome.message), (svc.flip_problem, outcome)

    @rule(percent=st.sampled_from((0, 5, 25, 50)), clear=st.booleans(), crash=crash_points)
    def expose(self, percent: int, clear: bool, crash: str | None) -> None:
        """A progressive step (or preview, or taking it back) on the standby (issue 23)."""
        router = self.world.router
        if router.unreachable:
            return
        side = None if clear else other_side(router.memory[SERVICE])

        def body(store: SQLiteStateStore) -> Any:
            return expose_traffic(store, router, ExposeRequest(
                service=SERVICE, side=side, percent=0 if clear else percent,
                command="rollout.step", reason="model", actor="op",
                recheck_hosts=self.world.recheck, lock_timeout_s=0))

        outcome = self._op(crash, body)
        if isinstance(outcome, ExposeResult) and outcome.changed:
            wanted = Exposure(side, percent) if side is not None else None
            assert router.exposed.get(SERVICE) == router.exposed_persisted.get(SERVICE) == \
                wanted, (outcome, router.exposed)
            svc = self.world.observer.get_service(SERVICE)
            assert svc is not None and svc.pending_flip is None
            assert (svc.exposed_side, svc.exposure_percent) == (side, percent if side else 0)

    @rule(fault=st.sampled_from(("refuse", "gone_after", "persist")))
    def expose_fault(self, fault: ExposeFault) -> None:
        self.world.router._expose_faults[:] = [fault]

    @rule(side=st.sampled_from(SIDES), crash=crash_points)
    def quarantine(self, side: Side, crash: str | None) -> None:
        self._quarantine(side, crash)

    @rule(crash=crash_points)
    def watch_quarantine(self, crash: str | None) -> None:
        """`watch --quarantine` found a deviation on the live side: the same operation."""
        if not self.world.router.unreachable:
            self._quarantine(self.world.router.memory[SERVICE], crash)

    def _quarantine(self, side: Side, crash: str | None) -> None:
        """`bluegreen quarantine --side`: one kernel operation (issue 20, 1 and 2)."""
        def body(store: SQLiteStateStore) -> Any:
            return quarantine_side(store, self.world.router, SERVICE, side, "INC-7", "op",
                                   recheck_hosts=self.world.recheck, lock_timeout_s=0)

        in_flight = self._runs_in_flight()
        outcome = self._op(crash, body)
        if isinstance(outcome, QuarantineOutcome):  # acknowledged: never lost from now on
            self.world.quarantined.add(side)
            if outcome.flip is not None:
                self._succeeded(outcome.flip)
            self._aborted_all(in_flight, outcome.flip or outcome)
        else:
            self._aborted_all(in_flight, outcome)

    @rule(side=st.sampled_from(SIDES), ok=st.booleans())
    def rebuild(self, side: Side, ok: bool) -> None:
        """`bluegreen rebuild --side`: re-image the standby (a patch begun: the way out of a
        quarantine), record it at the generation the begin returned, then the gate."""
        lock = self.world.observer.get_lock(SERVICE)
        if lock is not None and not lock.holder_is_gone():
            return  # LockHeld: a rollout is running
        router = self.world.router
        if router.unreachable or router.memory[SERVICE] == side:
            return  # the router is asked first (the store may never have seen the service)
        self.count += 1
        level = f"rebuild-{self.count}"

        def body(store: SQLiteStateStore) -> Any:
            audit = AuditEntryInput(actor="op", command="rebuild", service=SERVICE)
            began = store.begin_patch(SERVICE, side, level, audit=audit)
            self.world.ansible_starts(side, level)
            old = self.world.hosts[side]
            self.world.hosts_changed(side, Host(level, False, old.fingerprint + 1),
                                     patched=True)
            done = store.record_patch(SERVICE, side, level, audit=audit,
                                      expected_generation=began.generation)
            truth = self.world.hosts[side]
            return store.record_verification(
                SERVICE, side, ok, level, "model", hosts=truth.fingerprints(side),
                expected_generation=done.generation,
                audit=AuditEntryInput(actor="op", command="verify", service=SERVICE))

        self._op(None, body)

    @rule(side=st.sampled_from(SIDES), ok=st.booleans())
    def verify(self, side: Side, ok: bool) -> None:
        """`bluegreen verify --side`: holds the run lock, records what it read at the start."""
        lock = self.world.observer.get_lock(SERVICE)
        if lock is not None and not lock.holder_is_gone():
            return  # LockHeld: a rollout is running
        truth = self.world.hosts[side]

        def body(store: SQLiteStateStore) -> Any:
            began = store.get_side(SERVICE, side)
            level = began.patch_level if began else None
            passed = ok and not truth.partial and truth.level == (level or "L0")
            return store.record_verification(
                SERVICE, side, passed, level, "model", hosts=truth.fingerprints(side),
                expected_generation=began.generation if began else 0,
                audit=AuditEntryInput(actor="op", command="verify", service=SERVICE))

        self._op(None, body)

    @rule(crash=crash_points)
    def status(self, crash: str | None) -> None:
        """Any traffic command's first act: settle a crashed flip, or say the store differs."""
        live = self._op(crash, lambda store: settle(store, self.world.router, SERVICE, "op",
                                                    lock_timeout_s=0))
        if isinstance(live, str):  # settled: nothing pending, router and store agree
            svc = self.world.observer.get_service(SERVICE)
            assert svc is not None and svc.pending_flip is None
            assert svc.live_side == live == self.world.router.memory[SERVICE]

    @rule()
    def adopt(self) -> None:
        live = self._op(None, lambda store: adopt(store, self.world.router, SERVICE, "op",
                                                  "model"))
        if isinstance(live, str):
            svc = self.world.observer.get_service(SERVICE)
            assert svc is not None and svc.pending_flip is None and svc.live_side == live

    # -- the load balancer and the hosts -------------------------------------------------
    @rule(fault=st.sampled_from(FAULTS))
    def router_fault(self, fault: RouterFault) -> None:
        self.world.router.fail_next(fault)

    @rule()
    def router_heal(self) -> None:
        self.world.router.heal()

    @precondition(lambda self: not self.world.router.unreachable)
    @rule()
    def router_reload(self) -> None:
        self.world.router.reload()

    @rule(side=st.sampled_from(SIDES))
    def side_down_or_up(self, side: Side) -> None:
        self.world.router.down ^= {(SERVICE, side)}

    @rule(open_=st.booleans())
    def maintenance_window(self, open_: bool) -> None:
        """A campaign's window closes or opens: no rollout flip may land outside it."""
        self.world.window_open = open_

    @rule()
    def clock_steps_back(self) -> None:
        """The machine's clock is stepped back an hour (NTP, a restored VM)."""
        self.world.clock.advance(-3600)

    @rule(side=st.sampled_from(SIDES))
    def reimage(self, side: Side) -> None:
        """Someone rebuilds a standby host behind bluegreen's back."""
        if self.world.router.memory[SERVICE] == side:
            return
        if side == self._patching_side():
            return
        old = self.world.hosts[side]
        self.world.hosts_changed(side, Host("L0", False, old.fingerprint + 1))

