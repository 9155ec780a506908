"""Run a user's pytest-testinfra file in-process, through pytest itself, strictly.

The file is any valid testinfra file: `test_*(host)` functions, classes, fixtures (its own
and a conftest.py's next to it), parametrize, marks. It also runs unmodified under
`pytest FILE --hosts=...`. Here pytest runs it as a library, in this process, with
testinfra's own plugin off and ours on (`pytest_plugin.py`): the `host` fixture is a
testinfra Host over the run's pooled strict SSH connection (one connection per host per
probe run, shared with the checks and drift), parametrized over the gate's targets.

Results per host per test: a test passes when all of its phases passed; a failed
assertion is a failure; an error in a fixture, a skip (also xfail), a timeout, a lost or
refused connection, a test not run by the deadline, or a file pytest cannot collect are
errors. A host without any result is an error. Nothing here is ever a pass by default.

Speed: up to `concurrency` pytest sessions, in threads, the targets dealt out among them
(one target each up to 32 targets); they take turns (`pytest_plugin.Turns`): one runs pytest code at a time, and a session lets the
others run while its test waits for its host. So the hosts' waits overlap as in the
in-process engine, while pytest never sees two sessions at the same moment. The plugins
that swap process-wide hooks around each test (warnings, unraisable and thread exception
hooks, faulthandler, output capture) are off; what the tests print goes nowhere (never to
our output). One suite runs at a time in a process (`_ONE_SUITE`); modules it imported from
its folder are forgotten afterwards, so an edited suite is read again next time.
"""

from __future__ import annotations

import contextlib
import io
import os
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING

from orchestrator.probes.base import CheckResult, ProbeReport, ProbeTarget, Status
from orchestrator.probes.pool import ConnectionPool, shared
from orchestrator.trust import check_trusted

if TYPE_CHECKING:
    from orchestrator.probes.pytest_plugin import SuiteRun

_ONE_SUITE = threading.Lock()


def pytest_args(suite: Path) -> list[str]:
    """The session's command line: the file alone, isolated from any surrounding config."""
    return [
        str(suite),
        # ours provides `host`; testinfra's would connect on its own, or run the tests on
        # this machine (its default host is "local"). Its entry point is named
        # "pytest11.testinfra"; both names are blocked, and the plugin checks (SuiteRun).
        "-p", "no:pytest11.testinfra",
        "-p", "no:testinfra",
        "-p", "no:cacheprovider",
        "-p", "no:faulthandler",
        "-p", "no:terminal",
        "-p", "no:warnings",
        "-p", "no:unraisableexception",
        "-p", "no:threadexception",
        "--capture=no",
        "--import-mode=importlib",
        "-c", os.devnull,
        f"--rootdir={suite.parent}",
        f"--confcutdir={suite.parent}",
    ]  # fmt: skip


def run_suite(
    suite: str | Path,
    targets: Sequence[ProbeTarget],
    deadline_s: float,
    *,
    pool: ConnectionPool | None = None,
    concurrency: int = 32,
) -> ProbeReport:
    """Run a pytest-testinfra file on `targets`; results per host per test.

    `pool`: the run's connections (default: our own, closed before we return).
    """
    suite = Path(suite).resolve()
    started_at = time.time()
    t0 = time.monotonic()
    names = tuple(t.name for t in targets)
    if not targets:
        return ProbeReport([], started_at, 0.0, ())

    def all_error(evidence: str) -> ProbeReport:
        took = time.monotonic() - t0
        rs = [CheckResult(n, f"suite:{suite.name}", "error", evidence, took) for n in names]
        return ProbeReport(rs, started_at, took, names)

    if not suite.is_file():
        return all_error(f"suite file not found: {suite}")
    check_trusted(suite, "suite")  # code: refused when others could have changed it
    import pytest

    from orchestrator.probes import pytest_plugin

    turns = pytest_plugin.Turns()
    with _ONE_SUITE, shared(pool) as connections, _quiet():
        # up to `concurrency` sessions, the targets dealt out among them
        groups = [list(targets[i :: max(1, concurrency)]) for i in range(max(1, concurrency))]
        states = [
            pytest_plugin.SuiteRun(
                targets={t.name: t for t in group},
                connections=connections,
                deadline=t0 + deadline_s,
                deadline_s=deadline_s,
                turns=turns,
            )
            for group in groups
            if group
        ]

        def session(state: pytest_plugin.SuiteRun) -> int:
            with turns.turn():
                return int(pytest.main(pytest_args(suite), plugins=[pytest_plugin, state]))

        modules = set(sys.modules)
        try:
            with ThreadPoolExecutor(max_workers=max(1, min(concurrency, len(states)))) as ex:
                codes = list(ex.map(session, states))
        finally:
            _forget_modules_under(suite.parent, set(sys.modules) - modules)
    collect_errors = sorted({e for st in states for e in st.collect_errors})
    if collect_errors:
        return all_error("cannot collect the suite: " + "; ".join(collect_errors)[:1500])
    results = [
        r
        for st in states
        for r in _results(st, suite.name, list(st.targets), deadline_s, time.monotonic() - t0)
    ]
    code = max(codes, default=0)
    if not results:
        return all_error(f"pytest ran no test (exit {int(code)})")
    took = time.monotonic() - t0
    seen = {r.host for r in results}
    for n in names:
        if n not in seen:
            results.append(CheckResult(n, f"suite:{suite.name}", "error", "no test results for host", took))
    if int(code) not in (0, 1) and all(r.status == "pass" for r in results):
        results.append(
            CheckResult(names[0], f"suite:{suite.name}", "error", f"pytest exited {int(code)}", took)
        )
    return ProbeReport(results, started_at, took, names)


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """What the tests print goes nowhere (our stdout may be `--json`)."""
    sink = io.StringIO()
    with contextlib.redirect_stdout(sink), contextlib.redirect_stderr(sink):
        yield


def _forget_modules_under(folder: Path, names: set[str]) -> None:
    """Drop the suite's own modules (the file, its conftest.py, helpers next to it)."""
    for name in names:
        path = getattr(sys.modules.get(name), "__file__", None)
        if path and Path(path).resolve().is_relative_to(folder):
            del sys.modules[name]


def _results(
    state: SuiteRun, suite_name: str, names: Sequence[str], deadline_s: float, elapsed: float
) -> list[CheckResult]:
    results: list[CheckResult] = []
    for item in state.items.values():
        cid = f"suite:{suite_name}::{item.test}"
        status: Status = "pass"
        evidence = "passed"
        seconds = sum(p.seconds for p in item.phases)
        if not item.phases:
            status, evidence = "error", f"not run: deadline exceeded after {deadline_s:g} s"
            seconds = elapsed
        for phase in item.phases:
            if phase.outcome == "passed":
                continue
            failed_call = phase.when == "call" and phase.outcome == "failed" and not phase.no_answer
            this: Status = "fail" if failed_call else "error"
            if status == "pass" or (status == "fail" and this == "error"):
                status = this
                evidence = phase.evidence if phase.when == "call" else f"{phase.when}: {phase.evidence}"
        hosts = [item.host] if item.host is not None else list(names)
        results.extend(CheckResult(h, cid, status, evidence, seconds) for h in hosts)
    return results


class SuiteProbe:
    """The `Probe` contract over a user's pytest-testinfra file."""

    def __init__(self, suite: str | Path) -> None:
        self.suite = Path(suite)

    def run(self, targets: Sequence[ProbeTarget], deadline_s: float) -> ProbeReport:
        return run_suite(self.suite, targets, deadline_s)
