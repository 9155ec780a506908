"""Run a plain pytest-testinfra file in-process, over our strict SSH connections: fast.

The common shape of a testinfra file is a module of `test_*(host)` functions. Such a file
is run here without pytest's collection and without a subprocess: each host gets one strict
connection (the run's `ConnectionPool`, shared with its checks and drift), testinfra's static
facts are read in one round trip, and the tests of a host run concurrently on several
channels of that connection. Assertions are rewritten the way pytest does, so a failure
shows the compared values.

Anything else (fixtures other than `host`, classes, marks, a conftest.py next to the file)
is not this runner's business: `load_host_tests` returns None and the caller runs the file
under pytest (`suites.run_suite`).
"""

from __future__ import annotations

import ast
import importlib.util
import inspect
import threading
import time
import traceback
import types
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from orchestrator.probes.backend import DEFAULT_COMMAND_TIMEOUT, DeadlineExceeded, make_host
from orchestrator.probes.base import CheckResult, ProbeReport, ProbeTarget, Status
from orchestrator.probes.connection import CommandTimeout, ProbeConnectionError
from orchestrator.probes.pool import ConnectionPool, per_host, shared

HostTest = tuple[str, Callable[[Any], object]]

_counter = 0
_counter_lock = threading.Lock()


def _compile(path: Path, source: str) -> types.CodeType:
    tree = ast.parse(source, filename=str(path))
    try:
        from _pytest.assertion.rewrite import rewrite_asserts

        rewrite_asserts(tree, source.encode(), str(path), None)
    except Exception:  # noqa: BLE001 - plain asserts still work, with less evidence
        tree = ast.parse(source, filename=str(path))
    return compile(tree, str(path), "exec", dont_inherit=True)


def load_host_tests(path: str | Path) -> list[HostTest] | None:
    """The module's `test_*(host)` functions in file order, or None if it needs pytest."""
    global _counter
    path = Path(path)
    if (path.parent / "conftest.py").exists():
        return None
    source = path.read_text()
    code = _compile(path, source)
    with _counter_lock:
        _counter += 1
        name = f"_bluegreen_suite_{_counter}_{path.stem}"
    spec = importlib.util.spec_from_loader(name, loader=None, origin=str(path))
    if spec is None:
        return None
    module = importlib.util.module_from_spec(spec)
    module.__file__ = str(path)
    exec(code, module.__dict__)  # noqa: S102 - the user's own test file, as pytest would
    if hasattr(module, "pytestmark") or hasattr(module, "pytest_plugins"):
        return None
    tests: list[HostTest] = []
    for attr, obj in module.__dict__.items():
        if attr.startswith("Test") and inspect.isclass(obj):
            return None
        if not attr.startswith("test") or not inspect.isfunction(obj):
            if _is_fixture(obj):
                return None
            continue
        if obj.__module__ != name:
            continue  # imported from elsewhere
        params = list(inspect.signature(obj).parameters)
        if params != ["host"] or hasattr(obj, "pytestmark") or _is_fixture(obj):
            return None
        tests.append((attr, obj))
    return tests


def _is_fixture(obj: object) -> bool:
    return (
        hasattr(obj, "_pytestfixturefunction") or type(obj).__name__ == "FixtureFunctionDefinition"
    )


def _evidence(exc: BaseException, path: Path) -> str:
    frames = [f for f in traceback.extract_tb(exc.__traceback__) if f.filename == str(path)]
    where = f" ({path.name}:{frames[-1].lineno})" if frames else ""
    text = str(exc).strip() or (frames[-1].line or "" if frames else "")
    return f"{type(exc).__name__}: {text}{where}"[:2000]


def _run_one(test: HostTest, host: Any, target: ProbeTarget, path: Path) -> CheckResult:
    name, func = test
    cid = f"suite:{path.name}::{name}"
    start = time.monotonic()
    status: Status = "pass"
    evidence = "passed"
    try:
        func(host)
    except AssertionError as exc:
        status, evidence = "fail", _evidence(exc, path)
    except DeadlineExceeded as exc:
        status, evidence = "error", exc.message
    except (CommandTimeout, ProbeConnectionError) as exc:
        status, evidence = "error", exc.message
    except Exception as exc:  # noqa: BLE001 - a test error is a result, not a crash
        status, evidence = "error", _evidence(exc, path)
    return CheckResult(target.name, cid, status, evidence, time.monotonic() - start)


def _probe_host(
    target: ProbeTarget,
    tests: Sequence[HostTest],
    path: Path,
    deadline: float,
    deadline_s: float,
    channels: int,
    connections: ConnectionPool,
) -> list[CheckResult]:
    start = time.monotonic()
    try:
        conn = connections.get(target, timeout=max(0.1, deadline - time.monotonic()))
    except ProbeConnectionError as exc:
        took = time.monotonic() - start
        return [
            CheckResult(target.name, f"suite:{path.name}::{n}", "error", exc.message, took)
            for n, _ in tests
        ]
    host = make_host(
        conn,
        deadline=deadline,
        deadline_s=deadline_s,
        command_timeout=DEFAULT_COMMAND_TIMEOUT,
        prefetch=True,
    )
    with ThreadPoolExecutor(max_workers=max(1, min(channels, len(tests)))) as pool:
        return list(pool.map(lambda t: _run_one(t, host, target, path), tests))


def run_host_tests(
    path: str | Path,
    tests: Sequence[HostTest],
    targets: Sequence[ProbeTarget],
    deadline_s: float,
    *,
    concurrency: int = 16,
    channels: int = 4,
    pool: ConnectionPool | None = None,
) -> ProbeReport:
    """Run `tests` (from `load_host_tests`) on every target; results per host per test.

    `pool`: the run's connections (default: our own, closed before we return).
    """
    path = Path(path)
    started_at = time.time()
    t0 = time.monotonic()
    deadline = t0 + deadline_s
    names = tuple(t.name for t in targets)
    if not targets:
        return ProbeReport([], started_at, 0.0, ())
    with shared(pool) as connections:
        futures, done = per_host(
            lambda t: _probe_host(t, tests, path, deadline, deadline_s, channels, connections),
            targets,
            concurrency,
            deadline,
        )
    results: list[CheckResult] = []
    elapsed = time.monotonic() - t0
    for fut, target in futures.items():
        if fut in done and fut.exception() is None:
            results.extend(fut.result())
            continue
        why = (
            f"{type(fut.exception()).__name__}: {fut.exception()}"
            if fut in done
            else f"deadline exceeded after {deadline_s:g} s"
        )
        results.append(CheckResult(target.name, f"suite:{path.name}", "error", why, elapsed))
    return ProbeReport(results, started_at, time.monotonic() - t0, names)
