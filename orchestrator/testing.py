"""Fakes the tests share: a router that fails on cue, a patcher and a verification gate
for the rollout (`RolloutTools`), child rollouts made of them for the campaign engine
(`fake_rollouts`, with `fake_fleet`), a frozen clock, a temporary real SQLite store, a small
config, and for the failpoints a simulated crash (`crash_at`) or another process's command
interleaved there (`at_failpoints`).

Small, honest stand-ins for unit and model-based tests of the traffic kernel, the rollout
and the campaign; integration tests use the real lab instead. Never imported by the product
code.

    from orchestrator.testing import FakeRouter, FrozenClock, temp_store
    router = FakeRouter({"web": "blue"})
    router.fail_next("persist")          # the next flip moves traffic, then persisting fails
    with temp_store(tmp_path) as store:
        move_traffic(store, router, FlipRequest(...))
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Literal

from orchestrator.errors import FlipIncomplete, RouterError
from orchestrator.routers.base import (
    DrainResult,
    Exposure,
    FlipResult,
    ServerHealth,
    SideHealth,
    TrafficCounters,
)
from orchestrator.sides import Side
from orchestrator.state.sqlite import SQLiteStateStore
from orchestrator.traffic import failpoints

SimulatedCrash = failpoints.Crash
"""Raised by a failpoint hook: the process "dies" there (nothing handles it, no cleanup)."""


@contextmanager
def crash_at(*names: str) -> Iterator[list[str]]:
    """Within the block, reaching any failpoint in `names` raises SimulatedCrash. Yields
    the list of failpoints passed (in order), e.g. to pick crash points for a model test."""
    passed: list[str] = []

    def hook(name: str) -> None:
        passed.append(name)
        if name in names:
            raise SimulatedCrash(name)

    old = failpoints.hook
    failpoints.hook = hook
    try:
        yield passed
    finally:
        failpoints.hook = old


@contextmanager
def at_failpoints(
    crash: str | None = None, meanwhile: tuple[str, Callable[[], None]] | None = None
) -> Iterator[None]:
    """Within the block: at failpoint `meanwhile[0]` (once) run `meanwhile[1]`, e.g.
    another process's command interleaved right there (its own failpoints pass unhooked);
    at failpoint `crash` this process dies (SimulatedCrash)."""
    fired = False

    def hook(name: str) -> None:
        nonlocal fired
        if meanwhile is not None and not fired and name == meanwhile[0]:
            fired = True
            failpoints.hook = None
            try:
                meanwhile[1]()
            finally:
                failpoints.hook = hook
        if crash is not None and name == crash:
            raise SimulatedCrash(name)

    old = failpoints.hook
    failpoints.hook = hook
    try:
        yield
    finally:
        failpoints.hook = old


class FrozenClock:
    """A clock that moves only when told: `clock()` -> the current (aware, UTC) time."""

    def __init__(self, start: datetime | None = None) -> None:
        self.now = start or datetime(2026, 11, 7, 22, 0, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> datetime:
        self.now += timedelta(seconds=seconds)
        return self.now


@contextmanager
def temp_store(
    directory: Path, clock: Callable[[], datetime] | None = None
) -> Iterator[SQLiteStateStore]:
    """A real SQLite state store in `directory/state/state.db`, closed on exit. Open it
    again (a new `temp_store` on the same directory) to simulate a process restart."""
    with SQLiteStateStore(directory / "state" / "state.db", clock=clock) as store:
        yield store


def patched(store: Any, service: str, side: Side, level: str, *, audit: Any) -> Any:
    """`side` patched at `level` the only way a side gets there: a patch begun, then
    recorded at the generation it began with (the side must not be the live one)."""
    began = store.begin_patch(service, side, level, audit=audit)
    return store.record_patch(service, side, level, expected_generation=began.generation,
                              audit=audit)


RouterFault = Literal["refuse", "gone_before", "gone_after", "lost_reply", "persist", "confirm",
                      "reload"]
"""What the next flip does wrong:
- refuse: the router refuses; nothing changes (RouterError);
- gone_before: the socket is gone before the change (RouterError; the router stays
  unreadable until `heal()`);
- gone_after: the change is made, then the socket is gone (RouterError; unreadable);
- lost_reply: the change is made, its reply is lost before anything is persisted
  (RouterError; the router answers again at once);
- persist: the change is made, persisting it fails (FlipIncomplete, persisted=False);
- confirm: made and persisted, the confirming request fails (FlipIncomplete,
  confirmed=False);
- reload: the change is made, the load balancer reloads before it is persisted (memory
  back to the old map file, through `reload()`), then the map file is written from the map
  read before the reload: memory routes to the old side, the file to the new one; the
  read-back after persisting sees it (FlipIncomplete, moved=False, as the HAProxy driver
  raises it). On a flip to the side memory already routes to (a re-persist) the file keeps
  what it held."""


ExposeFault = Literal["refuse", "gone_after", "persist"]
"""What the next exposure change does wrong: refused (nothing changes); made, then the
socket is gone (unreadable until `heal()`); made in memory, persisting it fails
(FlipIncomplete, persisted=False)."""


@dataclass
class FakeRouter:
    """A `Router` with a memory (what traffic uses) and a persisted copy (what a reload
    restores), faults on cue, and a log of every flip that reached it."""

    memory: dict[str, Side] = field(default_factory=lambda: {"web": "blue"})
    persisted: dict[str, Side] = field(default_factory=dict)
    down: set[tuple[str, Side]] = field(default_factory=set)
    """(service, side) pairs with no server UP."""
    unreachable: bool = False
    counted: dict[tuple[str, Side], TrafficCounters] = field(default_factory=dict)
    count: Callable[[str, Side], TrafficCounters | None] | None = None
    """When set, answers `counters()` (e.g. growing 5xx to make bake roll back)."""
    flips: list[tuple[str, Side]] = field(default_factory=list)
    """Every flip that changed (or re-set) the memory, in order."""
    exposed: dict[str, Exposure] = field(default_factory=dict)
    """The exposures in memory (what traffic uses); `exposed_persisted`: what a reload
    restores."""
    exposed_persisted: dict[str, Exposure] = field(default_factory=dict)
    exposures: list[tuple[str, Exposure | None]] = field(default_factory=list)
    """Every exposure change that reached the memory, in order."""
    _faults: list[RouterFault | None] = field(default_factory=list)
    _expose_faults: list[ExposeFault | None] = field(default_factory=list)

    def __post_init__(self) -> None:
        for service, side in self.memory.items():
            self.persisted.setdefault(service, side)

    # -- cues ---------------------------------------------------------------------------
    def fail_next(self, *faults: RouterFault | None) -> None:
        """The next flips fail this way, one fault per flip (None: that flip works)."""
        self._faults.extend(faults)

    def fail_next_expose(self, *faults: ExposeFault | None) -> None:
        """The next exposure changes fail this way, one fault per call (None: it works)."""
        self._expose_faults.extend(faults)

    def heal(self) -> None:
        self.unreachable = False
        self._faults.clear()
        self._expose_faults.clear()

    def reload(self) -> None:
        """The load balancer reloads: memory is what was persisted."""
        self.memory = dict(self.persisted)
        self.exposed = dict(self.exposed_persisted)

    def expose(self, service: str, side: Side | None, percent: int) -> FlipResult:
        """`routers.base.Exposing`."""
        self._reachable("expose")
        started = time.monotonic()
        live = self.live(service)
        if side is not None and (service, side) in self.down:
            raise RouterError(f"fake router: no server of {side} is UP")
        fault = self._expose_faults.pop(0) if self._expose_faults else None
        if fault == "refuse":
            raise RouterError("fake router: refused the exposure")
        wanted = Exposure(side, percent) if side is not None else None
        self._set_exposed(service, wanted)
        if fault == "gone_after":
            self.unreachable = True
            raise RouterError("fake router: connection lost after `set map`")
        if fault == "persist":
            raise FlipIncomplete("fake router: disk full", persisted=False)
        if wanted is None:
            self.exposed_persisted.pop(service, None)
        else:
            self.exposed_persisted[service] = wanted
        return FlipResult(service, live, live, time.monotonic() - started, ["fake"],
                          persisted=True)

    def _set_exposed(self, service: str, wanted: Exposure | None) -> None:
        if self.exposed.get(service) == wanted:
            return
        if wanted is None:
            self.exposed.pop(service, None)
        else:
            self.exposed[service] = wanted
        self.exposures.append((service, wanted))

    def exposure(self, service: str) -> Exposure | None:
        """`routers.base.Exposing`."""
        self._reachable("exposure")
        return self.exposed.get(service)

    # -- Router ---------------------------------------------------------------------------
    def _reachable(self, what: str) -> None:
        if self.unreachable:
            raise RouterError(f"fake router: {what}: the admin socket is gone")

    def live(self, service: str) -> Side:
        self._reachable("live")
        try:
            return self.memory[service]
        except KeyError:
            raise RouterError(f"fake router: no entry for {service}") from None

    def flip(self, service: str, to_side: Side) -> FlipResult:
        self._reachable("flip")
        started = time.monotonic()
        if (service, to_side) in self.down:
            raise RouterError(f"fake router: no server of {to_side} is UP")
        fault = self._faults.pop(0) if self._faults else None
        if fault == "refuse":
            raise RouterError("fake router: refused")
        if fault == "gone_before":
            self.unreachable = True
            raise RouterError("fake router: the admin socket is gone")
        before = self.memory.get(service)
        self.memory[service] = to_side
        self.flips.append((service, to_side))
        if fault == "gone_after":
            self.unreachable = True
            raise RouterError("fake router: connection lost after `set map`")
        if fault == "lost_reply":
            raise RouterError("fake router: timed out waiting for the reply to `set map`")
        if fault == "persist":
            raise FlipIncomplete("fake router: disk full", persisted=False)
        if fault == "reload":
            # the file gets what persisting read before the reload; a re-persist (memory
            # already routed there) has nothing new to write: its file stays
            written = self.persisted.get(service, to_side) if before == to_side else to_side
            self.reload()
            self.persisted[service] = written
            raise FlipIncomplete(
                f"fake router: after persisting, memory routes {service} to "
                f"{self.memory.get(service)}, the map file to {written} (a reload between "
                "`set map` and persisting)", moved=False, persisted=False)
        self.persisted[service] = to_side
        if fault == "confirm":
            raise FlipIncomplete("fake router: no confirming response", persisted=True,
                                 confirmed=False)
        return FlipResult(service, before, to_side, time.monotonic() - started,
                          ["fake"], persisted=True)

    def drain(self, service: str, side: Side, deadline_s: float) -> DrainResult:
        self._reachable("drain")
        return DrainResult(service, side, 0, 0.0)

    def health(self, service: str, side: Side) -> SideHealth:
        self._reachable("health")
        status = "DOWN" if (service, side) in self.down else "UP"
        return SideHealth(service, side, f"{service}_{side}",
                          [ServerHealth(f"{service}-{side}-1", status)])

    def counters(self, service: str, side: Side) -> TrafficCounters | None:
        self._reachable("counters")
        if self.count is not None:
            return self.count(service, side)
        return self.counted.get((service, side))

    def close(self) -> None:
        """Nothing to release."""


# -- the rollout's tools (see orchestrator.rollout.tools.RolloutTools) -------------------------


@dataclass
class FakePatcher:
    """Stands in for Ansible (`patching.patch_side`). `fail`: (service, side) pairs whose
    patch fails after its task ran (the host may have changed); `untouched`: pairs whose
    patch fails before any task ran (sudo wants a password);
    `during`: called while "patching" (e.g. to run a rollback or a crash then). Every call is
    logged in `calls` as (service, side) — the live side must never appear there."""

    fail: set[tuple[str, Side]] = field(default_factory=set)
    untouched: set[tuple[str, Side]] = field(default_factory=set)
    during: Callable[[str, Side], None] | None = None
    calls: list[tuple[str, Side]] = field(default_factory=list)

    def __call__(self, config: object, service: str, side: Side, packages: object, *,
                 on_event: Callable[[object], None], cancel: Callable[[], bool],
                 fleet: object = None) -> Any:
        from orchestrator.patching import PatchResult, SideChanges, SidePatch
        from orchestrator.patching.results import HostPatchResult

        self.calls.append((service, side))
        if self.during is not None:
            self.during(service, side)
        host = f"{service}-{side}-1"
        if cancel():
            result = PatchResult(False, 254, "canceled", {}, 0.0, message="cancelled: aborted")
        elif (service, side) in self.fail:
            result = PatchResult(False, 2, "failed", {host: HostPatchResult(
                message="apt failed", failed_task="apt", reached=True)}, 0.0)
        elif (service, side) in self.untouched:
            result = PatchResult(False, 2, "failed", {host: HostPatchResult(
                message="sudo: a password is required", failed_task="Gathering Facts",
                reached=True, escalation_refused=True)}, 0.0)
        else:
            result = PatchResult(True, 0, "successful", {host: HostPatchResult(
                ok=True, changed=True, versions={"demo-web": "1.0.1"}, reached=True)}, 0.0)
        return SidePatch(result=result, changes=SideChanges(), level=None)


@dataclass
class FakeReport:
    results: list[object] = field(default_factory=list)


@dataclass
class FakeVerifyOutcome:
    ok: bool
    summary: str
    report: FakeReport = field(default_factory=FakeReport)
    generation: int | None = None


@dataclass
class FakeGate:
    """Stands in for the probes: records the verdict in the store like `verify_side`
    (generation-checked, with host fingerprints). `verdicts`: (service, side) -> ok
    (default True); `fingerprints`: host -> fingerprint recorded with a pass."""

    verdicts: dict[tuple[str, Side], bool] = field(default_factory=dict)
    fingerprints: dict[str, str] = field(default_factory=dict)
    calls: list[tuple[str, Side]] = field(default_factory=list)

    def __call__(self, config: object, store: Any, service: str, side: Side, *, actor: str,
                 packages: object = (), advisories: object = (), patch_level: str | None = None,
                 expected_generation: int | None = None, fleet: object = None
                 ) -> FakeVerifyOutcome:
        from orchestrator.state.models import AuditEntryInput

        self.calls.append((service, side))
        ok = self.verdicts.get((service, side), True)
        summary = "fake gate: all passed" if ok else "fake gate: 1 check failed"
        recorded = store.record_verification(
            service, side, ok, patch_level, summary,
            audit=AuditEntryInput(actor=actor, command="verify", service=service,
                                  after={"side": side, "ok": ok}),
            hosts=dict(self.fingerprints) if ok else None,
            expected_generation=expected_generation,
        )
        return FakeVerifyOutcome(ok, summary, generation=recorded.generation)


def fake_tools(patcher: FakePatcher | None = None, gate: FakeGate | None = None,
               recheck: Callable[[Side, Any], None] | None = None) -> Any:
    """`RolloutTools` made of fakes: no inventory, no SSH, no HTTP (bake watches the
    router's counters only)."""
    from orchestrator.rollout.tools import RolloutTools

    return RolloutTools(
        patch=patcher or FakePatcher(),
        verify=gate or FakeGate(),
        unreachable=lambda _hosts: [],
        readiness=lambda _config, _router, _service, _fleet: [],
        recheck=lambda _config, _service, _fleet: recheck,
        probe=lambda _url, _header, _backend: (True, ""),
        check_inputs=False,
    )


def fake_rollouts(patcher: FakePatcher | None = None, gate: FakeGate | None = None) -> Any:
    """A `campaign.child.RolloutFactory`: child rollouts made of `fake_tools()`, for the
    campaign engine's tests (`CampaignRunner(..., rollouts=fake_rollouts(), fleet=...)`)."""
    from functools import partial

    from orchestrator.rollout.runner import Rollout

    return partial(Rollout, tools=fake_tools(patcher, gate))


def fake_fleet(config: Any) -> Any:
    """The inventory of a `fake_config`: every service with no hosts (nothing to reach)."""
    from orchestrator.inventory import Fleet, ServiceHosts

    return Fleet({name: ServiceHosts(name, (), ()) for name in config.services})


def fake_config(directory: Path, services: tuple[str, ...] = ("web",), *,
                bake_seconds: float = 0.0) -> Any:
    """A valid bluegreen.yml (command router with counters, no frontends) in `directory`,
    loaded. Nothing in it is reached: use it with `fake_tools()` and a `FakeRouter`."""
    import json

    from orchestrator.config.loaded import load_config

    (directory / "hosts.yml").write_text("all: {}\n")
    (directory / "known_hosts").write_text("")
    doc = {
        "version": 1,
        "inventory": "hosts.yml",
        "ssh": {"known_hosts": "known_hosts"},
        "state": {"path": "state/state.db"},
        "router": {"kind": "command", "script": "/bin/false", "counters": True},
        "services": {
            name: {
                "sides": {"blue": f"{name}_blue", "green": f"{name}_green"},
                "patch": {"packages": [{"name": "demo-web", "version": "1.0.1"}]},
                "bake": {"seconds": bake_seconds, "interval_seconds": 0.01,
                         "min_responses": 1},
            }
            for name in services
        },
    }
    path = directory / "bluegreen.yml"
    path.write_text(json.dumps(doc))  # JSON is YAML
    return load_config(path)
