"""Run built-in checks on many hosts: one strict connection per host, hosts in parallel,
one overall deadline. The connection comes from the run's `ConnectionPool` (shared with the
run's suites and drift), or from a pool of this call's own, closed when it returns.

Every target gets at least one result. A host that cannot be reached, shows a wrong host
key or does not finish before the deadline gets "error" results with the reason.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor

from orchestrator.probes.backend import DEFAULT_COMMAND_TIMEOUT, make_host
from orchestrator.probes.base import CheckResult, ProbeReport, ProbeTarget
from orchestrator.probes.checks import Check
from orchestrator.probes.connection import ProbeConnectionError
from orchestrator.probes.pool import ConnectionPool, per_host, shared

log = logging.getLogger(__name__)

DEFAULT_CHANNELS = 4


class _Sink:
    """Results per host; closed hosts (deadline passed) ignore late results."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._results: dict[str, list[CheckResult]] = {}
        self._closed: set[str] = set()

    def add(self, result: CheckResult) -> None:
        with self._lock:
            if result.host not in self._closed:
                self._results.setdefault(result.host, []).append(result)

    def close(self, host: str) -> list[CheckResult]:
        with self._lock:
            self._closed.add(host)
            return list(self._results.get(host, []))

    def get(self, host: str) -> list[CheckResult]:
        with self._lock:
            return list(self._results.get(host, []))


def _deadline_text(deadline_s: float) -> str:
    return f"deadline exceeded after {deadline_s:g} s"


def _probe_host(
    target: ProbeTarget,
    checks: Sequence[Check],
    deadline: float,
    deadline_s: float,
    command_timeout: float,
    sink: _Sink,
    channels: int,
    connections: ConnectionPool,
) -> None:
    remaining = deadline - time.monotonic()
    if remaining <= 0:
        return  # the engine reports it
    start = time.monotonic()
    try:
        conn = connections.get(target, timeout=remaining)
    except ProbeConnectionError as exc:
        took = time.monotonic() - start
        for check in checks:
            sink.add(CheckResult(target.name, check.primary_id(), "error", exc.message, took))
        return
    host = make_host(
        conn,
        deadline=deadline,
        deadline_s=deadline_s,
        command_timeout=command_timeout,
        prefetch=len(checks) > 1,
    )

    def one(check: Check) -> None:
        if time.monotonic() >= deadline:
            sink.add(
                CheckResult(
                    target.name, check.primary_id(), "error", _deadline_text(deadline_s), 0.0
                )
            )
            return
        for result in check.run(host, target):
            sink.add(result)

    if channels <= 1 or len(checks) <= 1:
        for check in checks:
            one(check)
    else:
        # Several SSH channels over the one connection: checks of a host overlap.
        with ThreadPoolExecutor(
            max_workers=min(channels, len(checks)), thread_name_prefix=f"probe-{target.name}"
        ) as pool:
            list(pool.map(one, checks))


def _collect(
    futures: dict[Future[None], ProbeTarget],
    done: set[Future[None]],
    sink: _Sink,
    checks: Sequence[Check],
    deadline_s: float,
    elapsed: float,
) -> list[CheckResult]:
    """Every target's results; a host not done by the deadline gets its missing checks."""
    results: list[CheckResult] = []
    for fut, target in futures.items():
        got = sink.close(target.name)
        if fut in done:
            exc = fut.exception()
            if exc is not None:
                log.error("probe of %s crashed", target.name, exc_info=exc)
                got.append(
                    CheckResult(
                        target.name, "probe", "error", f"{type(exc).__name__}: {exc}", elapsed
                    )
                )
        else:
            have = {r.check for r in got}
            missing = [c.primary_id() for c in checks if c.primary_id() not in have]
            for cid in missing or ["probe"]:
                got.append(
                    CheckResult(target.name, cid, "error", _deadline_text(deadline_s), elapsed)
                )
        if not got:
            got.append(
                CheckResult(target.name, "probe", "error", "no checks ran on this host", elapsed)
            )
        results.extend(got)
    return results


def run_checks(
    targets: Sequence[ProbeTarget],
    checks: Sequence[Check],
    deadline_s: float,
    concurrency: int = 16,
    *,
    command_timeout: float = DEFAULT_COMMAND_TIMEOUT,
    channels: int = DEFAULT_CHANNELS,
    pool: ConnectionPool | None = None,
) -> ProbeReport:
    """Run `checks` on every target within `deadline_s` seconds overall.

    `channels`: how many checks of one host run at once, each on its own channel of the
    host's single SSH connection. `pool`: the run's connections (default: our own, closed
    before we return, which also ends checks still running past the deadline).
    """
    started_at = time.time()
    t0 = time.monotonic()
    deadline = t0 + deadline_s
    sink = _Sink()
    names = tuple(t.name for t in targets)
    if len(set(names)) != len(names):
        raise ValueError(f"target names must be unique: {names}")
    if not targets:
        return ProbeReport([], started_at, 0.0, ())
    with shared(pool) as connections:

        def probe(target: ProbeTarget) -> None:
            _probe_host(
                target, checks, deadline, deadline_s, command_timeout, sink, channels, connections
            )

        futures, done = per_host(probe, targets, concurrency, deadline)
        # Before the connections close (ours do on leaving the block): late rows are ignored.
        results = _collect(futures, done, sink, checks, deadline_s, time.monotonic() - t0)
    return ProbeReport(results, started_at, time.monotonic() - t0, names)


class CheckProbe:
    """The `Probe` contract over built-in checks."""

    def __init__(
        self,
        checks: Sequence[Check],
        *,
        concurrency: int = 16,
        command_timeout: float = DEFAULT_COMMAND_TIMEOUT,
    ) -> None:
        self.checks = list(checks)
        self.concurrency = concurrency
        self.command_timeout = command_timeout

    def run(self, targets: Sequence[ProbeTarget], deadline_s: float) -> ProbeReport:
        return run_checks(
            targets,
            self.checks,
            deadline_s,
            self.concurrency,
            command_timeout=self.command_timeout,
        )
