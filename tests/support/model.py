"""The world of the model-based tests (tests/unit/traffic/test_kernel_model.py, ...): what
survives a crash of any bluegreen process (the load balancer, the hosts, the state file)
and the invariants of ARCHITECTURE.md and issue 10, checked from the outside.

- `WatchedRouter`: a `FakeRouter` that, at every change of its memory, looks at the state
  store (the kernel calls the router outside any transaction) and judges the move: was it
  journaled, was its target a legal one (or forced), are the hosts the verified ones.
- `Hosts`: the truth about each side's hosts (the level Ansible left on them, whether a
  patch is half done, a fingerprint that changes when a host is re-imaged); the store's
  beliefs are checked against it.
- `World.check()`: every invariant, called after every rule.

The model never asks the kernel what is legal: its rules are written down here again, from
the architecture, so a wrong gate is caught too.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from orchestrator.errors import LockHeld, VerificationFailed
from orchestrator.routers.base import Exposure, FlipResult
from orchestrator.sides import SIDES, Side
from orchestrator.state import LockHolder, SQLiteStateStore, StateStore
from orchestrator.state.models import RESUMABLE_STATUSES, SideState
from orchestrator.testing import FakeRouter, FrozenClock

SERVICE = "web"
FLIP_COMMANDS = frozenset({"flip", "rollback", "rollout.flip", "rollout.auto-rollback",
                           "quarantine"})
ROLLBACK_COMMANDS = frozenset({"rollback", "rollout.auto-rollback"})
DONE_RESULTS = frozenset({"ok", "forced", "incomplete", "recovered"})
"""Results of a flip's one audit record (not its `.begin`, `.failed` or `.repair`)."""


def host_of(side: Side) -> str:
    return f"{SERVICE}-{side}-1"


@dataclass
class Host:
    """What is really on a side's hosts."""

    level: str = "L0"
    partial: bool = False
    """A patch began and did not finish (Ansible running, failed or killed mid-dpkg)."""
    fingerprint: int = 0
    """Changes when the host is re-imaged behind bluegreen's back."""

    def fingerprints(self, side: Side) -> dict[str, str]:
        return {host_of(side): f"fp{self.fingerprint}"}


@dataclass
class Move:
    """One change of the router's memory."""

    flip_id: str | None
    """The pending flip journaled when the router moved (None: not by a flip)."""
    command: str | None
    from_side: Side | None
    to_side: Side
    external: bool = False
    """A load balancer reload, not bluegreen."""


class WatchedRouter(FakeRouter):
    """A FakeRouter that tells its world about every change of its memory."""

    world: World | None = None
    _flipping: tuple[str, Side | None] | None = None
    """(service, memory before) while a flip runs: its own move is judged at its end, or
    before a reload inside it (the fault "reload"), which is the load balancer's move."""

    def flip(self, service: str, to_side: Side) -> FlipResult:
        self._flipping = (service, self.memory.get(service))
        try:
            return super().flip(service, to_side)
        finally:
            self._judge_flip()
            self._flipping = None

    def _judge_flip(self) -> None:
        if self._flipping is None:
            return
        service, before = self._flipping
        after = self.memory.get(service)
        if after is not None and after != before and self.world is not None:
            self.world.router_moved(service, before, after)
        self._flipping = (service, after)

    def _set_exposed(self, service: str, wanted: Exposure | None) -> None:
        before = self.exposed.get(service)
        super()._set_exposed(service, wanted)
        if wanted is not None and wanted != before and self.world is not None:
            self.world.router_exposed(service, wanted)

    def reload(self) -> None:
        self._judge_flip()
        before = dict(self.memory)
        super().reload()
        for service, side in self.memory.items():
            if before.get(service) != side and self.world is not None:
                self.world.moves.append(Move(None, None, before.get(service), side,
                                             external=True))
        if self._flipping is not None:
            self._flipping = (self._flipping[0], self.memory.get(self._flipping[0]))


@dataclass
class World:
    """Everything a crash of a bluegreen process leaves as it was."""

    directory: Path
    router: WatchedRouter = field(default_factory=lambda: WatchedRouter({SERVICE: "blue"}))
    hosts: dict[Side, Host] = field(default_factory=lambda: {s: Host() for s in SIDES})
    clock: FrozenClock = field(default_factory=FrozenClock)
    moves: list[Move] = field(default_factory=list)
    violations: list[str] = field(default_factory=list)
    forced_onto: set[Side] = field(default_factory=set)
    """Sides traffic was forced onto (`--force`) as their hosts are now: the operator's
    call, not a violation (`hosts_changed` forgets it)."""
    failed_under_traffic: set[Side] = field(default_factory=set)
    """Sides a rollback took traffic away from: no target until patched again."""
    window_open: bool = True
    """A campaign's maintenance window: no rollout flips outside it."""
    quarantined: set[Side] = field(default_factory=set)
    """Sides a `quarantine` (or `watch --quarantine`) said it quarantined (the command
    returned): they stay quarantined until a patch begins on them (issue 20)."""
    holders: list[subprocess.Popen[bytes]] = field(default_factory=list)
    state_url: str | None = None
    """The store: a SQLite file in `directory` (None), or this (emptied) PostgreSQL
    database."""
    session_lost: bool = False
    """The process acting now lost its database session (and with it its locks): it may
    move traffic no more, except back where its own flip found it (the undo of a flip it
    cannot record)."""

    def __post_init__(self) -> None:
        if self.state_url is not None:
            from tests.support.postgres import empty_tables

            empty_tables(self.state_url)
        self.router.world = self
        self.observer = self.open_store()
        """The test's own eye on the state file (reads only)."""

    @property
    def db(self) -> Path:
        return self.directory / "state" / "state.db"

    def open_store(self) -> StateStore:
        """A store as a new bluegreen process opens it."""
        if self.state_url is None:
            return SQLiteStateStore(self.db, clock=self.clock)
        from orchestrator.state.registry import open_store, parse_state_url

        return open_store(parse_state_url(self.state_url), clock=self.clock,
                          audit_key_file=self.directory / "audit.key")

    @contextlib.contextmanager
    def process(self) -> Iterator[StateStore]:
        """One short bluegreen command (an operator's `rollback`, `flip`, `verify`...)."""
        store = self.open_store()
        try:
            yield store
        finally:
            store.close()

    def spawn_holder(self) -> LockHolder:
        """A live process to hold a run lock (the run's process); `kill` it to crash."""
        proc = subprocess.Popen(["sleep", "3600"])
        self.holders.append(proc)
        return LockHolder(holder="ci@model", pid=proc.pid, hostname=socket.gethostname())

    def kill_holder(self, pid: int) -> None:
        for proc in self.holders:
            if proc.pid == pid and proc.poll() is None:
                proc.send_signal(signal.SIGKILL)
                proc.wait()

    def close(self) -> None:
        for proc in self.holders:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        self.observer.close()

    # -- the truth ----------------------------------------------------------------------

    def ansible_starts(self, side: Side, level: str) -> None:
        """Ansible begins on `side`: never on the side that takes traffic (all of it, or a
        share: an exposure)."""
        if self.router.memory.get(SERVICE) == side and side not in self.forced_onto:
            self.violations.append(f"Ansible started on {side}, which takes traffic")
        exposed = self.router.exposed.get(SERVICE)
        if exposed is not None and exposed.side == side:
            self.violations.append(f"Ansible started on {side}, which takes a share of traffic")
        self.quarantined.discard(side)  # the documented way out: a patch begun after it
        old = self.hosts[side]
        self.hosts_changed(side, Host(level, True, old.fingerprint), patched=True)

    def hosts_changed(self, side: Side, host: Host, *, patched: bool = False) -> None:
        self.hosts[side] = host
        self.forced_onto.discard(side)
        if patched:
            self.failed_under_traffic.discard(side)

    def recheck(self, side: Side, recorded: Any) -> None:
        """The flip's host recheck: the side's hosts must be the ones that were verified."""
        now = self.hosts[side].fingerprints(side)
        for host, fingerprint in dict(recorded).items():
            if now.get(host) != fingerprint:
                raise VerificationFailed(f"{SERVICE}: {host} changed since it was verified")

    # -- the router's moves, judged when they happen ------------------------------------

    def router_moved(self, service: str, before: Side | None, after: Side) -> None:
        svc = self.observer.get_service(service)
        pending = svc.pending_flip if svc is not None else None
        if pending is None:
            self.violations.append(f"the router moved {before} -> {after} with no journaled flip")
            self.moves.append(Move(None, None, before, after))
            return
        self.moves.append(Move(pending.id, pending.command, before, after))
        if after == pending.from_side:
            return  # an undo: traffic back where it was before this flip
        if self.session_lost:
            self.violations.append(f"{pending.command} moved traffic {before} -> {after} "
                                   "after its process lost its database session (its locks)")
        if after != pending.to_side:
            self.violations.append(f"the router moved to {after}, the journal says "
                                   f"{pending.to_side}")
            return
        if pending.command == "rollout.flip" and not self.window_open:
            self.violations.append("a rollout flipped outside its maintenance window")
        if pending.run_id is not None:
            run = self.observer.get_run(pending.run_id)
            if run is None or run.status not in RESUMABLE_STATUSES:
                self.violations.append(f"run {pending.run_id} moved traffic after it ended "
                                       f"({run.status if run else 'missing'})")
        rollback_to = svc.rollback_to if svc else None
        if pending.command in ROLLBACK_COMMANDS and after == rollback_to and before:
            self.failed_under_traffic.add(before)
        if pending.forced:
            self.forced_onto.add(after)
            return
        side = self.observer.get_side(service, after)
        why = self.illegal_target(after, side, svc.rollback_to if svc else None,
                                  rollback=pending.command in ROLLBACK_COMMANDS)
        if why:
            self.violations.append(f"{pending.command} moved traffic {before} -> {after}: {why}")

    def illegal_target(self, target: Side, side: SideState | None, rollback_to: Side | None,
                       *, rollback: bool) -> str | None:
        """Why traffic may not go to `target` now (ARCHITECTURE.md, issue 10), or None."""
        state = side.state if side else "untouched"
        truth = self.hosts[target]
        if target in self.quarantined:
            return f"it was quarantined, and no patch began on it since ({state})"
        if target in self.failed_under_traffic:
            return f"a rollback took traffic away from it and it was not patched since ({state})"
        if truth.partial:
            return f"its hosts are half patched ({truth.level}); the store says {state}"
        verified_now = (
            side is not None and state == "verified" and side.verification_ok is True
            and side.verified_patch_level == side.patch_level
        )
        if not verified_now and not (target == rollback_to and state in ("verified",
                                                                         "untouched")):
            level = side.patch_level if side else None
            return f"it is {state} (level {level}), not verified at its level nor the rollback side"
        if side is not None and side.hosts and not rollback:
            if side.hosts != truth.fingerprints(target):
                return "its hosts changed since they were verified"
        if verified_now and side is not None and side.hosts == truth.fingerprints(target):
            if truth.level != (side.verified_patch_level or "L0"):
                return (f"the store says verified at {side.verified_patch_level}, the hosts "
                        f"run {truth.level}")
        return None

    def router_exposed(self, service: str, exposure: Exposure) -> None:
        """An exposure set at the router (taking one back is always allowed): journaled as
        such, on the standby, to a side the gate allows (issue 23)."""
        svc = self.observer.get_service(service)
        pending = svc.pending_flip if svc is not None else None
        if pending is None or not pending.exposure:
            self.violations.append(f"the router exposed {exposure} with no journaled intent")
            return
        if (pending.exposed_side, pending.percent) != (exposure.side, exposure.percent):
            self.violations.append(f"the router exposed {exposure}, the journal says "
                                   f"{pending.exposed_side} at {pending.percent} %")
            return
        if self.router.memory.get(service) == exposure.side:
            self.violations.append(f"{exposure.side} was exposed while it is live")
        if self.hosts[exposure.side].partial and exposure.side not in self.forced_onto:
            self.violations.append(f"{exposure.side} was exposed while half patched")
        side = self.observer.get_side(service, exposure.side)
        why = self.illegal_target(exposure.side, side, svc.rollback_to if svc else None,
                                  rollback=False)
        if why:
            self.violations.append(f"{pending.command} exposed {exposure.side}: {why}")

    # -- invariants, after every rule -----------------------------------------------------

    def check(self, *, run_alive: bool, aborted_run_alive: bool) -> None:
        assert not self.violations, self.violations
        store = self.observer
        svc = store.get_service(SERVICE)
        router = self.router
        self._traffic_lock_is_free(store)
        report = store.verify_audit()
        assert report.ok, report
        self._audit_matches_moves(store)
        if svc is None or svc.live_side is None:
            assert not self.moves, "the router moved before the store knew the service"
            return
        if not router.unreachable:
            live = router.memory[SERVICE]
            pending = svc.pending_flip
            explained = (
                live == svc.live_side
                or (pending is not None and live == pending.to_side)
                or (svc.flip_problem is not None and svc.flip_problem.startswith("not persisted")
                    and live == router.persisted[SERVICE])
            )
            assert explained, (f"router says {live}, store says {svc.live_side} "
                               f"(pending {pending}, problem {svc.flip_problem})")
            if pending is None and svc.flip_problem is None and live == svc.live_side:
                assert router.persisted[SERVICE] == live, (
                    f"traffic is on {live} with no recorded problem, but the persisted map "
                    f"says {router.persisted[SERVICE]}")
            # nothing patches the side that takes traffic (unless forced there)
            if self.hosts[live].partial and live not in self.forced_onto:
                raise AssertionError(f"{live} takes traffic and is half patched")
            self._exposure_recorded(store, svc)
        for side_name in SIDES:
            side = store.get_side(SERVICE, side_name)
            if side is None or side.state != "verified":
                continue
            truth = self.hosts[side_name]
            if side.hosts and side.hosts == truth.fingerprints(side_name):
                assert not truth.partial and truth.level == (side.verified_patch_level or "L0"), (
                    f"{side_name}: verified at {side.verified_patch_level}, really "
                    f"{truth.level}{' (half patched)' if truth.partial else ''}")
        for side_name in self.quarantined:  # an acknowledged quarantine is never lost
            side = store.get_side(SERVICE, side_name)
            assert side is not None and side.state == "quarantined", (
                f"{side_name} was quarantined, no patch began on it, and the store says "
                f"{side.state if side else 'untouched'}")
            if not router.unreachable and side_name not in self.forced_onto:
                assert router.memory[SERVICE] != side_name, f"{side_name}: quarantined, live"
        lock = store.get_lock(SERVICE)
        if lock is not None:
            run = store.get_run(lock.run_id)
            assert run is not None, f"lock of a run that does not exist: {lock}"
            if run.status not in RESUMABLE_STATUSES and not lock.holder_is_gone():
                # a killed holder's lock stays (kill -9) and is taken over by the next run
                assert run.status == "aborted" and aborted_run_alive, (
                    f"lock left behind by run {run.run_id} ({run.status})")

    def _exposure_recorded(self, store: StateStore, svc: Any) -> None:
        """The router's exposure is the store's, unless an exposure change is pending, or
        the router lost it (a reload: less traffic on the standby), or taking one back was
        recorded with its persist problem in the service's flip problem (a reload brings it
        back until the next traffic command takes it back again)."""
        exposed = self.router.exposed.get(SERVICE)
        recorded = (Exposure(svc.exposed_side, svc.exposure_percent)
                    if svc.exposed_side is not None else None)
        if exposed == recorded or exposed is None:
            return
        if svc.pending_flip is not None and svc.pending_flip.exposure:
            return
        if recorded is None and (svc.flip_problem or "").startswith("exposure not persisted"):
            return  # said: the next traffic command takes it back and persists that
        raise AssertionError(f"the router exposes {exposed}, the store records {recorded}")

    def _traffic_lock_is_free(self, store: StateStore) -> None:
        try:
            with store.traffic_lock(SERVICE, 0.0, command="model-check"):
                pass
        except LockHeld as exc:  # pragma: no cover - the failure message
            raise AssertionError(f"traffic lock left behind: {exc.message}") from exc

    def _audit_matches_moves(self, store: StateStore) -> None:
        """Every router change has exactly one audit record (its flip's), and every such
        record has its router change."""
        done: dict[str, list[str]] = {}
        for rec in store.audit_records(SERVICE):
            if rec.after.get("exposure"):
                continue  # an exposure change: the live side did not move
            if rec.command in FLIP_COMMANDS and rec.result in DONE_RESULTS:
                flip_id = str(rec.after.get("flip_id"))
                done.setdefault(flip_id, []).append(f"{rec.command}/{rec.result}")
        for flip_id, records in done.items():
            assert len(records) == 1, f"flip {flip_id} has {len(records)} records: {records}"
        svc = store.get_service(SERVICE)
        pending_id = svc.pending_flip.id if svc and svc.pending_flip else None
        net: dict[str, Side | None] = {}
        """flip id -> where its move left the router (None: undone or reverted)."""
        for move in self.moves:
            if move.flip_id is not None and move.flip_id not in net:
                net[move.flip_id] = move.to_side
            elif move.flip_id is not None:
                net[move.flip_id] = None if move.to_side != net[move.flip_id] else move.to_side
            if move.external:  # a reload reverted whatever flip left this side
                for key, to in net.items():
                    if to == move.from_side:
                        net[key] = None
        for flip_id, to in net.items():
            if flip_id == pending_id:
                continue
            if to is not None and flip_id not in done:
                raise AssertionError(f"flip {flip_id} moved the router to {to}; no audit record")
        for flip_id in done:
            assert flip_id in net and flip_id != pending_id, (
                f"audit records flip {flip_id} ({done[flip_id]}), the router never moved for it")


def env_int(name: str, default: int) -> int:
    value = os.environ.get(name, "")
    return int(value) if value.strip() else default


def model_settings(examples_variable: str, examples: int, steps: int) -> Any:
    """Hypothesis settings of a model's machine: `examples` derandomized examples of
    `steps` steps for CI; `examples_variable=N` (and `BLUEGREEN_MODEL_STEPS=M`) explores N
    random ones instead."""
    from hypothesis import HealthCheck, settings

    return settings(
        max_examples=env_int(examples_variable, examples),
        stateful_step_count=env_int("BLUEGREEN_MODEL_STEPS", steps),
        derandomize=not env_int(examples_variable, 0),
        deadline=None,
        database=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
    )
