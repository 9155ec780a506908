"""The pytest plugin that runs a user's testinfra file over bluegreen's strict connections.

Loaded by `suites.run_suite` into an in-process pytest session (with testinfra's own plugin
switched off). It provides testinfra's fixtures, `host` and `_testinfra_host` (module
scope, as testinfra has them), parametrized over the gate's targets: each is a testinfra
Host backed by the run's pooled strict SSH connection to that target (`pool.py`), so a
suite opens no connection of its own. Everything else is pytest's: collection, conftest.py,
fixtures, parametrize, marks, classes, assertion rewriting.

It records every phase of every test (`SuiteRun`), for `suites.run_suite` to turn into
results per host per test. The run's deadline is checked before each test; tests not run
by then are errors.

`Turns`: `suites.run_suite` runs one pytest session per target, in threads. Only one of
them runs pytest code at a time (pytest's own state is not made for threads); a session
gives its turn away only while one of its tests waits for its host (an SSH command), so
the hosts' waits overlap like the in-process engine's, and pytest sees one session at a
time everywhere else.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Generator, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import pytest

from orchestrator.probes.backend import DEFAULT_COMMAND_TIMEOUT, make_host
from orchestrator.probes.base import ProbeTarget
from orchestrator.probes.connection import CommandTimeout, ProbeConnectionError
from orchestrator.probes.pool import ConnectionPool

HOST_PARAM = "_testinfra_host"
_STATE = pytest.StashKey["SuiteRun"]()
#: exceptions that mean "no answer", never a test's verdict: an error, not a failure
_NO_ANSWER = (CommandTimeout, ProbeConnectionError)


class Turns:
    """One pytest session at a time, except while a session's test waits for a host."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._mine = threading.local()

    @contextmanager
    def turn(self) -> Iterator[None]:
        """Held by a session's thread for the whole session."""
        self._lock.acquire()
        self._mine.held = True
        try:
            yield
        finally:
            self._mine.held = False
            self._lock.release()

    @contextmanager
    def waiting(self) -> Iterator[None]:
        """Around a wait for a host: another session may run meanwhile."""
        if not getattr(self._mine, "held", False):
            yield
            return
        self._mine.held = False
        self._lock.release()
        try:
            yield
        finally:
            self._lock.acquire()
            self._mine.held = True


@dataclass
class Phase:
    """One phase (setup, call, teardown) of one test."""

    when: str
    outcome: str  # passed | failed | skipped
    evidence: str
    seconds: float
    no_answer: bool = False


@dataclass
class Item:
    test: str  # the test's id without the file and without the host
    host: str | None  # None: the test does not use `host`
    phases: list[Phase] = field(default_factory=list)


@dataclass
class SuiteRun:
    """One suite on some targets: state shared by the plugin's hooks and fixtures."""

    targets: dict[str, ProbeTarget]
    connections: ConnectionPool
    deadline: float  # time.monotonic()
    deadline_s: float
    turns: Turns = field(default_factory=Turns)
    items: dict[str, Item] = field(default_factory=dict)
    collect_errors: list[str] = field(default_factory=list)
    _hosts: dict[str, Any] = field(default_factory=dict)

    def host(self, name: str) -> Any:
        """The testinfra Host for target `name` (ProbeConnectionError: no connection)."""
        if name not in self._hosts:
            target = self.targets[name]
            with self.turns.waiting():
                left = max(0.1, self.deadline - time.monotonic())
                conn = self.connections.get(target, timeout=left)
            self._hosts[name] = make_host(
                conn,
                deadline=self.deadline,
                deadline_s=self.deadline_s,
                command_timeout=DEFAULT_COMMAND_TIMEOUT,
                prefetch=True,
                waiting=self.turns.waiting,
            )
        return self._hosts[name]

    # ---- hooks (this object is registered as a pytest plugin) -------------------------
    def pytest_configure(self, config: pytest.Config) -> None:
        import testinfra.plugin

        if config.pluginmanager.is_registered(testinfra.plugin):
            raise pytest.UsageError(
                "testinfra's own pytest plugin is active: it would run the suite elsewhere"
            )
        config.stash[_STATE] = self

    def pytest_generate_tests(self, metafunc: pytest.Metafunc) -> None:
        if HOST_PARAM in metafunc.fixturenames:
            names = list(self.targets)
            metafunc.parametrize(HOST_PARAM, names, ids=names, scope="module", indirect=True)

    def pytest_collection_modifyitems(self, items: list[pytest.Item]) -> None:
        for item in items:
            self.items[item.nodeid] = Item(_test_id(item), _host_of(item))

    def pytest_collectreport(self, report: pytest.CollectReport) -> None:
        if report.failed:
            self.collect_errors.append(_text(report) or f"cannot collect {report.nodeid}")

    @pytest.hookimpl(tryfirst=True)
    def pytest_runtest_protocol(self, item: pytest.Item) -> None:
        if time.monotonic() >= self.deadline:
            item.session.shouldstop = f"deadline exceeded after {self.deadline_s:g} s"

    @pytest.hookimpl(wrapper=True)
    def pytest_runtest_makereport(
        self, item: pytest.Item, call: pytest.CallInfo[None]
    ) -> Generator[None, pytest.TestReport, pytest.TestReport]:
        report = yield
        record = self.items.setdefault(item.nodeid, Item(_test_id(item), _host_of(item)))
        excinfo = call.excinfo
        no_answer = excinfo is not None and isinstance(excinfo.value, _NO_ANSWER)
        evidence = "passed"
        if report.outcome != "passed":
            if no_answer and excinfo is not None:
                evidence = getattr(excinfo.value, "message", None) or str(excinfo.value)
            else:
                evidence = _text(report)
        record.phases.append(
            Phase(call.when, report.outcome, evidence[:2000], report.duration, no_answer)
        )
        return report


def _host_of(item: pytest.Item) -> str | None:
    callspec = getattr(item, "callspec", None)
    if callspec is None or HOST_PARAM not in callspec.params:
        return None
    return str(callspec.params[HOST_PARAM])


def _test_id(item: pytest.Item) -> str:
    """`Class::test[other-params]`: the node id without the file and the host."""
    path = item.nodeid.split("::", 1)[1] if "::" in item.nodeid else item.name
    callspec = getattr(item, "callspec", None)
    base = path.split("[", 1)[0]
    if callspec is None:
        return base
    ids = [i for i in getattr(callspec, "_idlist", []) if i != _host_of(item)]
    return f"{base}[{'-'.join(str(i) for i in ids)}]" if ids else base


def _text(report: pytest.TestReport | pytest.CollectReport) -> str:
    """The reason of a failed or skipped phase, in one line when pytest has one."""
    longrepr = report.longrepr
    if isinstance(longrepr, tuple) and len(longrepr) == 3:  # a skip: (path, line, reason)
        return f"skipped: {str(longrepr[2]).removeprefix('Skipped: ')}"
    crash = getattr(longrepr, "reprcrash", None)
    if crash is not None:
        return f"{crash.message} ({crash.path.rsplit('/', 1)[-1]}:{crash.lineno})"
    text = str(longrepr or "").strip()
    return text.splitlines()[-1] if text else report.outcome


@pytest.fixture(scope="module")
def _testinfra_host(request: pytest.FixtureRequest) -> Any:
    return request.config.stash[_STATE].host(request.param)


@pytest.fixture(scope="module")
def host(_testinfra_host: Any) -> Any:
    """A testinfra Host over bluegreen's strict pooled connection to one target."""
    return _testinfra_host
