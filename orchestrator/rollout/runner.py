"""The per-service rollout: precheck -> patch standby -> verify -> flip -> bake -> done.

Every step is journaled before and after it runs; a killed run (even `kill -9`) resumes from
the journal with `resume`. Steps are idempotent. Invariants kept here:
- traffic never moves to a side whose last verification failed or predates its patch;
- the router is the truth about the live side; a disagreeing store stops the run;
- the live side is never touched (Ansible is limited to the standby's inventory group);
- a flip that degrades during bake is flipped back automatically.
"""

from __future__ import annotations

import secrets
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from orchestrator.config.loaded import LoadedConfig
from orchestrator.config.models import PackageSpec
from orchestrator.errors import (
    Aborted,
    BluegreenError,
    FlipIncomplete,
    OutsideWindow,
    PatchFailed,
    RolledBack,
    RouterError,
    StateMismatch,
    VerificationFailed,
)
from orchestrator.routers.base import Router, TrafficCounters
from orchestrator.sides import Side, other_side
from orchestrator.state.base import StateStore
from orchestrator.state.models import AuditEntryInput, Run
from orchestrator.traffic import FlipRequest, failpoints, move_traffic, settle
from orchestrator.traffic.kernel import HostRecheck

STEPS = ("precheck", "patch", "verify", "flip", "bake")


@dataclass(frozen=True)
class Event:
    """Progress of a rollout, for the CLI to render. `step` is one of STEPS or "host"."""

    run_id: str
    step: str
    phase: str  # begin | end | progress | info
    message: str
    data: dict[str, Any] = field(default_factory=dict)


@dataclass
class RolloutResult:
    run_id: str
    service: str
    status: str
    from_side: str | None
    to_side: str | None
    message: str
    seconds: float
    steps: dict[str, dict[str, Any]] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {
            "run_id": self.run_id,
            "service": self.service,
            "status": self.status,
            "from": self.from_side,
            "to": self.to_side,
            "message": self.message,
            "seconds": round(self.seconds, 2),
            "steps": self.steps,
        }


def patch_level(packages: Sequence[PackageSpec], security_updates: bool) -> str:
    if packages:
        return ",".join(sorted(str(p) for p in packages))
    return "security-updates" if security_updates else "none"


def new_run_id(service: str) -> str:
    return f"{service}-{datetime.now(UTC).strftime('%Y%m%dT%H%M%S')}-{secrets.token_hex(2)}"


def _patch_side(config: LoadedConfig, service: str, side: Side,
                packages: list[PackageSpec] | None, *, on_event: Callable[[Any], None],
                cancel: Callable[[], bool]) -> Any:
    from orchestrator.patching import patch_side

    return patch_side(config, service, side, packages, on_event=on_event, cancel=cancel)


def _verify_side(config: LoadedConfig, store: StateStore, service: str, side: Side, *,
                 actor: str, packages: Sequence[PackageSpec],
                 advisories: Sequence[dict[str, Any]], patch_level: str,
                 expected_generation: int) -> Any:
    from orchestrator.rollout.steps.verify import verify_side

    return verify_side(config, store, service, side, actor=actor, packages=packages,
                       advisories=advisories, patch_level=patch_level,
                       expected_generation=expected_generation)


def _unreachable_hosts(config: LoadedConfig, service: str) -> list[str]:
    """Hosts of either side that do not answer with an SSH banner."""
    from orchestrator.inventory import load_fleet

    fleet = load_fleet(config).service(service)
    return _unreachable([*fleet.blue, *fleet.green])


def host_recheck(config: LoadedConfig, service: str) -> HostRecheck:
    """The flip's host recheck: the side's hosts must be the ones that were verified."""

    def recheck(side: Side, recorded: Any) -> None:
        from orchestrator.inventory import load_fleet
        from orchestrator.probes.gate import targets_for
        from orchestrator.probes.identity import recheck as recheck_hosts

        targets = targets_for(config, load_fleet(config).service(service).side(side))
        recheck_hosts(service, side, targets, recorded)

    return recheck


@dataclass
class RolloutTools:
    """What a rollout does besides the store and the router: Ansible, the probes, SSH
    reachability, the flip's host recheck and bake's requests. Tests swap them for fakes
    (`orchestrator.testing`); the defaults are the real ones."""

    patch: Callable[..., Any] = _patch_side
    """(config, service, side, packages, *, on_event, cancel) -> a `patching.SidePatch`."""
    verify: Callable[..., Any] = _verify_side
    """(config, store, service, side, *, actor, packages, advisories, patch_level,
    expected_generation) -> a VerifyOutcome; records the verdict in the store."""
    unreachable: Callable[[LoadedConfig, str], list[str]] = _unreachable_hosts
    recheck: Callable[[LoadedConfig, str], HostRecheck | None] = host_recheck
    probe: Callable[[str, str | None, str | None], tuple[bool, str]] = field(
        default_factory=lambda: _probe_once
    )
    check_inputs: bool = True
    """Read the inventory and find the playbook before anything is written."""


class Rollout:
    """One service's rollout. Build it, then call `start()` or `resume(run)`."""

    def __init__(
        self,
        config: LoadedConfig,
        store: StateStore,
        router: Router,
        *,
        actor: str,
        on_event: Callable[[Event], None] | None = None,
        advisories: Sequence[dict[str, Any]] = (),
        may_flip: Callable[[str], str | None] | None = None,
        tools: RolloutTools | None = None,
    ) -> None:
        self.tools = tools or RolloutTools()
        self.config = config
        self.store = store
        self.router = router
        self.actor = actor
        self.on_event = on_event or (lambda _e: None)
        self.advisories = list(advisories)
        # campaign hook: returns None to allow the flip, or the reason it must wait
        self.may_flip = may_flip

    # ---- entry points ------------------------------------------------------------------
    def start(
        self,
        service: str,
        packages: Sequence[PackageSpec] | None = None,
        *,
        reason: str | None = None,
        run_id: str | None = None,
        kind: str = "rollout",
        extra_params: dict[str, Any] | None = None,
    ) -> RolloutResult:
        svc = self.config.service(service)
        chosen = list(packages) if packages else list(svc.patch.packages)
        params = {
            "packages": [str(p) for p in chosen],
            "security_updates": not chosen and svc.patch.security_updates,
            **(extra_params or {}),  # e.g. {"campaign_run": ID} for a campaign's child run
        }
        self._check_inputs(service)
        run_id = run_id or new_run_id(service)
        self.store.acquire_lock(service, run_id)
        try:
            run = self.store.create_run(run_id, kind, service, params, self.actor, reason=reason)
        except BaseException:
            self.store.release_lock(service, run_id)
            raise
        return self._drive(run)

    def _check_inputs(self, service: str) -> None:
        """Bad input (inventory, playbook path) fails here, before the lock or the run is
        written: bad input changes nothing, not even the audit chain."""
        if not self.tools.check_inputs:
            return
        from orchestrator.inventory import load_fleet

        load_fleet(self.config).service(service)
        self.config.playbook_path(service)

    def resume(self, run: Run) -> RolloutResult:
        if run.service is None:
            raise BluegreenError(f"run {run.run_id} has no service")
        self.store.acquire_lock(run.service, run.run_id)  # takes over a dead holder's lock
        self._emit(run.run_id, "resume", "info", f"resuming {run.run_id}")
        return self._drive(run)

    # ---- the state machine ---------------------------------------------------------------
    def _drive(self, run: Run) -> RolloutResult:
        started = time.monotonic()
        service = run.service or ""
        result = RolloutResult(run.run_id, service, "running", None, None, "", 0.0)
        crashed = False
        done = self._finished_steps(run.run_id)
        try:
            plan = self._recover(run, done)
            result.from_side, result.to_side = plan["live"], plan["standby"]
            packages = [_spec(p) for p in run.params.get("packages", [])]
            level = patch_level(packages, bool(run.params.get("security_updates")))
            level = self._installed_level(run.run_id) or level
            for step in STEPS:
                if step in done:
                    continue
                self._check_not_aborted(run.run_id)
                self.store.journal_begin(run.run_id, step, {"at": _now()})
                failpoints.hit(f"{step}:begin")
                self._emit(run.run_id, step, "begin", step)
                data = self._step(step, run, plan, packages, level)
                if step == "patch":
                    level = data["patch_level"]  # what is installed, not what was asked
                if step == "precheck":
                    plan = data
                    result.from_side, result.to_side = plan["live"], plan["standby"]
                self.store.journal_end(run.run_id, step, data)
                failpoints.hit(f"{step}:end")
                result.steps[step] = data
                self._emit(run.run_id, step, "end", _describe(step, data), data)
            result.status, result.message = (
                "done",
                (
                    f"{service}: {result.to_side} is live and patched ({level}); "
                    f"{result.from_side} kept as standby"
                ),
            )
            self.store.finish_run(run.run_id, "done", result.message)
        except RolledBack as exc:
            result.status, result.message = "rolled_back", exc.message
            self._finish(run.run_id, "rolled_back", exc.message)
            raise
        except Aborted as exc:
            result.status, result.message = "aborted", exc.message
            raise
        except OutsideWindow as exc:  # may_flip said no: patched+verified standby stays
            result.status, result.message = "deferred", exc.message
            self._finish(run.run_id, "deferred", exc.message)
            raise
        except BluegreenError as exc:
            if self._is_aborted(run.run_id):  # aborted meanwhile: that is what stopped it
                result.status = "aborted"
                result.message = self._aborted_message(run.run_id)
                raise Aborted(result.message, hint=exc.message) from exc
            result.status, result.message = "failed", exc.message
            self._finish(run.run_id, "failed", exc.message)
            raise
        except failpoints.Crash:  # a simulated kill -9: nothing more happens in this "process"
            crashed = True
            raise
        except BaseException as exc:  # Ctrl-C, bugs: leave the run consistent and resumable
            self._finish(run.run_id, "failed", f"interrupted: {type(exc).__name__}: {exc}")
            raise
        finally:
            result.seconds = time.monotonic() - started
            if not crashed:
                self._release(service, run.run_id)
        return result

    def _step(
        self, step: str, run: Run, plan: dict[str, Any], packages: list[PackageSpec], level: str
    ) -> dict[str, Any]:
        service = run.service or ""
        if step == "precheck":
            return self._precheck(service)
        standby: Side = plan["standby"]
        live: Side = plan["live"]
        if step == "patch":
            return self._patch(run, service, standby, packages, level)
        if step == "verify":
            return self._verify(service, standby, packages, level)
        if step == "flip":
            return self._flip(run, service, live, standby)
        return self._bake(run, service, live, standby)

    def _precheck(self, service: str) -> dict[str, Any]:
        live = settle(self.store, self.router, service, self.actor)
        standby = other_side(live)
        unreachable = self.tools.unreachable(self.config, service)
        if unreachable:
            raise BluegreenError(
                f"{service}: unreachable over SSH: {', '.join(unreachable)}",
                hint="both sides must be reachable before a rollout; check the hosts or the network",
            )
        return {"live": live, "standby": standby, "standby_hosts": self._hosts_of(service, standby)}

    def _hosts_of(self, service: str, side: Side) -> list[str]:
        if not self.tools.check_inputs:
            return []
        from orchestrator.inventory import load_fleet

        return [h.name for h in load_fleet(self.config).service(service).side(side)]

    def _patch(
        self, run: Run, service: str, standby: Side, packages: list[PackageSpec], level: str
    ) -> dict[str, Any]:
        from orchestrator.patching import step_record

        # Recorded before Ansible touches the side: a failed or killed patch leaves it
        # `patching`, which no flip (nor rollback) may target until patched and verified.
        self.store.begin_patch(
            service,
            standby,
            level,
            audit=AuditEntryInput(
                actor=self.actor,
                command="rollout.patch.begin",
                service=service,
                reason=f"run {run.run_id}",
                after={"side": standby, "patch_level": level},
            ),
        )

        def progress(p: Any) -> None:
            self._emit(
                run.run_id,
                "patch",
                "progress",
                f"{p.host}: {p.task} {p.status}",
                {"host": p.host, "task": p.task, "status": p.status},
            )

        patched = self.tools.patch(
            self.config,
            service,
            standby,
            packages or None,
            on_event=progress,
            cancel=lambda: self._is_aborted(run.run_id),
        )
        if not patched.ok:
            bad = patched.result.failures() or [patched.result.message or patched.result.status]
            raise PatchFailed(
                f"{service}: patching {standby} failed: " + "; ".join(bad)
                + f" ({patched.changes.summary()})",
                hint="fix the host or the package, then `bluegreen resume`",
            )
        for warning in patched.warnings:
            self._emit(run.run_id, "patch", "warning", f"warning: {warning}")
        data = step_record(patched, standby, level)
        self.store.record_patch(
            service,
            standby,
            data["patch_level"],
            audit=AuditEntryInput(
                actor=self.actor,
                command="rollout.patch",
                service=service,
                reason=f"run {run.run_id}",
                after={k: data[k] for k in ("side", "patch_level", "asked", "changes")},
            ),
        )
        return data

    def _installed_level(self, run_id: str) -> str | None:
        """The level the patch step found installed (on resume after it)."""
        for e in self.store.journal(run_id):
            if e.step == "patch" and e.phase == "end":
                return str(e.data["patch_level"])
        return None

    def _verify(
        self, service: str, standby: Side, packages: list[PackageSpec], level: str
    ) -> dict[str, Any]:
        began = self.store.get_side(service, standby)  # the generation the verdict is for
        outcome = self.tools.verify(
            self.config,
            self.store,
            service,
            standby,
            actor=self.actor,
            packages=packages,
            advisories=self.advisories,
            patch_level=level,
            expected_generation=began.generation if began else 0,
        )
        if not outcome.ok:
            raise VerificationFailed(
                f"{service}: {standby} failed verification: {outcome.summary}",
                hint=f"see `bluegreen verify {service} --side {standby}`; traffic was not moved",
            )
        return {
            "side": standby,
            "ok": True,
            "summary": outcome.summary,
            "checks": len(outcome.report.results),
            "results": [  # the evidence for campaign reports
                {"host": r.host, "check": r.check, "status": r.status, "evidence": r.evidence[:300]}
                for r in outcome.report.results
            ],
        }

    def _flip(self, run: Run, service: str, live: Side, standby: Side) -> dict[str, Any]:
        # A flip a crash interrupted is completed (or cancelled) first: then the window and
        # approval are asked only when traffic still has to move.
        current = settle(self.store, self.router, service, self.actor)
        if current != standby and self.may_flip is not None:
            why = self.may_flip(service)
            if why:
                raise OutsideWindow(f"{service}: not flipping: {why}")
        outcome = move_traffic(self.store, self.router, FlipRequest(
            service=service, command="rollout.flip", reason=f"run {run.run_id}",
            actor=self.actor, to=standby, run_id=run.run_id,
            recheck_hosts=self.tools.recheck(self.config, service),
        ))
        if not outcome.changed:  # resumed after the router had flipped
            return {"from": live, "to": standby, "recovered": True}
        # the old side keeps serving requests already in flight: wait for them, bounded
        drain_s = self.config.router.drain_seconds
        try:
            drained = self.router.drain(service, live, drain_s)
            sessions_left: int | None = drained.sessions_left
        except RouterError as exc:
            self._emit(run.run_id, "flip", "info", f"drain of {live} not measured: {exc.message}")
            sessions_left = None
        return {
            "from": live,
            "to": standby,
            "seconds": round(outcome.seconds, 4),
            "confirmed_by": outcome.confirmed_by,
            "old_side_sessions_left": sessions_left,
        }

    def _bake(self, run: Run, service: str, old: Side, new: Side) -> dict[str, Any]:
        bake = self.config.service(service).bake
        url = _bake_url(self.config, service)
        backend = self.config.router.backend_name(service, new)
        header = self.config.router.confirm_header
        deadline = time.monotonic() + bake.seconds
        sent = failed = streak = 0
        last_error = ""
        watch = _TrafficWatch(self.router, service, new, bake.max_error_ratio,
                              bake.min_responses)
        while time.monotonic() < deadline:
            self._check_not_aborted(run.run_id)
            ok, last = self.tools.probe(url, header, backend) if url else (True, "")
            sent += 1
            if ok:
                streak = 0
            else:
                failed += 1
                streak += 1
                last_error = last
                self._emit(run.run_id, "bake", "progress", f"request failed: {last}")
                if streak >= bake.max_failures:
                    self._auto_rollback(run, service, old, new, last_error)
            degraded = watch.degraded()
            if degraded:
                self._auto_rollback(run, service, old, new, degraded)
            time.sleep(bake.interval_seconds)
        return {"seconds": bake.seconds, "requests": sent, "failed": failed, "url": url,
                **watch.as_dict()}

    def _auto_rollback(self, run: Run, service: str, old: Side, new: Side, why: str) -> None:
        """Back to the side that was live before the flip (rollback semantics: `new`
        becomes failed_live), through the kernel like every other flip."""
        self._emit(run.run_id, "bake", "info", f"degraded under traffic ({why}): rolling back")
        try:
            move_traffic(self.store, self.router, FlipRequest(
                service=service, command="rollout.auto-rollback",
                reason=f"run {run.run_id}: bake failed: {why}", actor=self.actor, to=None,
                run_id=run.run_id,
            ))
        except FlipIncomplete as exc:  # back on `old`, recorded, but not persisted/confirmed
            raise RolledBack(
                f"{service}: {new} degraded during bake ({why}); traffic is back on {old}, "
                f"but: {exc.message}",
                hint=exc.hint,
            ) from exc
        except (Aborted, StateMismatch):
            raise
        except BluegreenError as exc:
            raise BluegreenError(
                f"{service}: {new} degraded during bake ({why}) AND the automatic rollback "
                f"to {old} failed: {exc.message}; traffic is still on {new}",
                hint=f"run `bluegreen rollback {service} --reason ...` now (it goes back to "
                f"{old}); {exc.hint or ''}".rstrip("; "),
            ) from exc
        raise RolledBack(
            f"{service}: {new} degraded during bake ({why}); traffic is back on {old}",
            hint=f"{new} keeps the patch and is failed_live: a new rollout must patch and "
            "verify it again",
        )

    # ---- resume support ------------------------------------------------------------------
    def _finished_steps(self, run_id: str) -> set[str]:
        return {e.step for e in self.store.journal(run_id) if e.phase == "end"}

    def _recover(self, run: Run, done: set[str]) -> dict[str, Any]:
        """The plan of a run: from its precheck, or empty before it. On resume, the kernel
        first completes or cancels a flip the crash interrupted (also the bake's automatic
        rollback); then router and store must agree with where the run left traffic."""
        ends = {e.step: e.data for e in self.store.journal(run.run_id) if e.phase == "end"}
        plan = dict(ends.get("precheck", {}))
        if not plan:
            return {"live": None, "standby": None}
        service = run.service or ""
        live = settle(self.store, self.router, service, self.actor)
        begun = {e.step for e in self.store.journal(run.run_id) if e.phase == "begin"}
        if "flip" in done and "bake" in begun and live == plan["live"]:
            # the bake's automatic rollback had moved traffic back before the crash
            raise RolledBack(
                f"{service}: {plan['standby']} degraded during bake (before the interruption);"
                f" traffic is back on {plan['live']}",
                hint=f"{plan['standby']} keeps the patch and is failed_live",
            )
        if "flip" in done:
            expected = [plan["standby"]]
        elif "flip" in begun:
            expected = [plan["live"], plan["standby"]]  # the flip step finds out which
        else:
            expected = [plan["live"]]
        if live not in expected:
            raise StateMismatch(
                f"{service}: cannot resume {run.run_id}: the router (and the store) say {live} "
                f"is live, the run expected {' or '.join(expected)}",
                hint="someone flipped since the run stopped; check, then start a new rollout",
            )
        return plan

    def _is_aborted(self, run_id: str) -> bool:
        run = self.store.get_run(run_id)
        return run is not None and run.status == "aborted"

    def _aborted_message(self, run_id: str) -> str:
        run = self.store.get_run(run_id)
        return f"run {run_id} was aborted: {run.result if run else ''}"

    def _check_not_aborted(self, run_id: str) -> None:
        if self._is_aborted(run_id):
            raise Aborted(self._aborted_message(run_id))

    def _finish(self, run_id: str, status: Any, message: str) -> None:
        run = self.store.get_run(run_id)
        if run is not None and run.status in ("running", "deferred"):
            self.store.finish_run(run_id, status, message)

    def _release(self, service: str, run_id: str) -> None:
        lock = self.store.get_lock(service)
        if lock is not None and lock.run_id == run_id:
            self.store.release_lock(service, run_id)

    def _emit(
        self, run_id: str, step: str, phase: str, message: str, data: dict[str, Any] | None = None
    ) -> None:
        self.on_event(Event(run_id, step, phase, message, data or {}))


def _spec(text: str) -> PackageSpec:
    from orchestrator.config.loaded import parse_package_arg

    return parse_package_arg(text)


def _now() -> str:
    return datetime.now(UTC).isoformat()


def _describe(step: str, data: dict[str, Any]) -> str:
    if step == "precheck":
        return f"live={data['live']} standby={data['standby']}"
    if step == "patch":
        summary = data.get("changes", {}).get("summary")
        tail = f": {summary}" if summary else ""
        return f"patched {data['side']} ({data['patch_level']}) in {data['seconds']}s{tail}"
    if step == "verify":
        return str(data["summary"])
    if step == "flip":
        return f"flipped {data['from']} -> {data['to']}"
    return f"baked {data['seconds']}s: {data['requests']} requests, {data['failed']} failed"


class _TrafficWatch:
    """The new side's responses as the load balancer counts them for every client: real
    users' 5xx count against the side, not only bluegreen's own probe requests."""

    def __init__(self, router: Router, service: str, side: Side, max_ratio: float,
                 min_responses: int) -> None:
        self.router, self.service, self.side = router, service, side
        self.max_ratio, self.min_responses = max_ratio, min_responses
        self.start = self._read()
        self.seen = TrafficCounters(0, 0)

    def _read(self) -> TrafficCounters | None:
        try:
            return self.router.counters(self.service, self.side)
        except RouterError:
            return None

    def degraded(self) -> str | None:
        if self.start is None:
            return None
        now = self._read()
        if now is None:
            return None
        self.seen = now.since(self.start)
        total, errors = self.seen.responses, self.seen.errors_5xx
        if total >= self.min_responses and errors > self.max_ratio * total:
            return (f"{errors} of {total} responses of {self.side} at the load balancer were "
                    f"5xx ({errors / total:.0%}, limit {self.max_ratio:.0%})")
        return None

    def as_dict(self) -> dict[str, Any]:
        if self.start is None:
            return {"lb_counters": None}
        return {"lb_counters": self.seen.as_dict()}


def _bake_url(config: LoadedConfig, service: str) -> str | None:
    base = config.router.frontends.get(service)
    if not base:
        return None
    return str(base).rstrip("/") + config.service(service).bake.url_path


def _probe_once(url: str, header: str | None, backend: str | None) -> tuple[bool, str]:
    try:
        with urllib.request.urlopen(url, timeout=2) as resp:
            served_by = resp.headers.get(header) if header else None
            if backend and served_by and served_by != backend:
                return False, f"served by {served_by}, expected {backend}"
            resp.read()
            return True, ""
    except urllib.error.HTTPError as exc:
        return False, f"HTTP {exc.code}"
    except OSError as exc:
        return False, f"{type(exc).__name__}: {exc}"


def _unreachable(hosts: Sequence[Any]) -> list[str]:
    import socket
    from concurrent.futures import ThreadPoolExecutor

    def down(h: Any) -> bool:
        try:
            with socket.create_connection((h.address, h.port), timeout=3) as s:
                s.settimeout(3)
                return not s.recv(8).startswith(b"SSH-")
        except OSError:
            return True

    with ThreadPoolExecutor(max_workers=min(16, max(1, len(hosts)))) as pool:
        flags = list(pool.map(down, hosts))
    return [h.name for h, bad in zip(hosts, flags, strict=True) if bad]
