"""One connection per host per probe run (`probes.pool`), with fake connections: no hosts."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import paramiko
import pytest

from orchestrator.probes import ConnectionPool, ProbeTarget, parse_checks, run_checks
from orchestrator.probes.connection import ProbeConnectionError, SSHConnection
from orchestrator.probes.drift import read_fingerprints
from orchestrator.probes.suites import run_suite
from tests.unit.probes.test_drift import OUTPUT as FINGERPRINT_OUTPUT

Reply = Callable[[str], tuple[int, bytes, bytes]]


def ok_reply(command: str) -> tuple[int, bytes, bytes]:
    if "@@bluegreen-drift@@" in command:
        return 0, FINGERPRINT_OUTPUT.encode(), b""
    return 0, b"", b""


class FakeConnection(SSHConnection):
    """An SSHConnection that never touches the network; it records what happens to it."""

    def __init__(
        self,
        target: ProbeTarget,
        log: list[tuple[str, str]],
        *,
        open_s: float = 0.0,
        fail: str | None = None,
        reply: Reply = ok_reply,
    ) -> None:
        super().__init__(target)
        self.log = log
        self.open_s = open_s
        self.fail = fail
        self.reply = reply
        self.opened = False
        self.closed = threading.Event()

    @property
    def is_open(self) -> bool:
        return self.opened and not self.closed.is_set()

    def open(self, timeout: float | None = None) -> None:
        self.log.append(("open", self.target.name))
        time.sleep(self.open_s)
        if self.fail is not None:
            raise ProbeConnectionError(self.fail, reason="unreachable")
        self.opened = True

    def close(self) -> None:
        if self.opened and not self.closed.is_set():
            self.log.append(("close", self.target.name))
        self.closed.set()

    def run_bytes(self, command: str | bytes, timeout: float) -> tuple[int, bytes, bytes]:
        if not self.is_open:
            raise ProbeConnectionError("connection was lost", reason="unreachable")
        text = command.decode() if isinstance(command, bytes) else command
        return self.reply(text)


def target(name: str) -> ProbeTarget:
    return ProbeTarget(name=name, address=f"{name}.invalid", known_hosts="/nonexistent")


TARGETS = [target("h1"), target("h2"), target("h3")]


def fake_pool(log: list[tuple[str, str]], **kw: Any) -> tuple[ConnectionPool, list[FakeConnection]]:
    made: list[FakeConnection] = []

    def connect(t: ProbeTarget) -> SSHConnection:
        conn = FakeConnection(t, log, **kw)
        made.append(conn)
        return conn

    return ConnectionPool(connect=connect), made


def opens(log: list[tuple[str, str]]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for what, host in log:
        if what == "open":
            counts[host] = counts.get(host, 0) + 1
    return counts


# ---- the pool itself ------------------------------------------------------------------------
def test_one_open_per_host_under_concurrent_use() -> None:
    log: list[tuple[str, str]] = []
    pool, made = fake_pool(log, open_s=0.05)
    with pool, ThreadPoolExecutor(max_workers=24) as workers:
        got = list(workers.map(lambda i: pool.get(TARGETS[i % 3]), range(48)))
    assert opens(log) == {"h1": 1, "h2": 1, "h3": 1}
    assert pool.opened == 3 and len(made) == 3
    for t in TARGETS:
        assert len({id(c) for c in got if c.target == t}) == 1  # everyone got the same one


def test_hosts_connect_in_parallel() -> None:
    log: list[tuple[str, str]] = []
    pool, _ = fake_pool(log, open_s=0.3)
    started = time.monotonic()
    with pool, ThreadPoolExecutor(max_workers=3) as workers:
        list(workers.map(pool.get, TARGETS))
    assert time.monotonic() - started < 0.8  # not 3 x 0.3 s one after the other


def test_closed_at_the_end_and_not_usable_after() -> None:
    log: list[tuple[str, str]] = []
    pool, made = fake_pool(log)
    with pool:
        for t in TARGETS:
            pool.get(t)
        assert not any(c.closed.is_set() for c in made)
    assert all(c.closed.is_set() for c in made)
    assert sorted(h for what, h in log if what == "close") == ["h1", "h2", "h3"]
    with pytest.raises(ProbeConnectionError, match="probe run ended"):
        pool.get(TARGETS[0])
    assert pool.opened == 3  # no new connection after the end
    pool.close()  # twice is fine


def test_closed_on_exception() -> None:
    log: list[tuple[str, str]] = []
    pool, made = fake_pool(log)
    with pytest.raises(RuntimeError), pool:
        pool.get(TARGETS[0])
        pool.get(TARGETS[1])
        raise RuntimeError("the run broke")
    assert len(made) == 2 and all(c.closed.is_set() for c in made)


def test_a_failed_connect_is_remembered_for_the_run() -> None:
    log: list[tuple[str, str]] = []
    pool, _ = fake_pool(log, open_s=0.05, fail="unreachable: h1.invalid:22: timed out")
    with pool, ThreadPoolExecutor(max_workers=8) as workers:

        def ask(_: int) -> str:
            try:
                pool.get(TARGETS[0])
            except ProbeConnectionError as exc:
                return exc.message
            return "connected?"

        why = set(workers.map(ask, range(8)))
    assert why == {"unreachable: h1.invalid:22: timed out"}
    assert opens(log) == {"h1": 1}  # tried once, not once per asker
    assert pool.opened == 0


# ---- a probe run over one pool --------------------------------------------------------------
SUITE = """
def test_true(host):
    assert host.run("true").rc == 0


def test_echo(host):
    assert host.run("echo hi").rc == 0
"""


def test_checks_suite_and_drift_share_one_connection_per_host(tmp_path: Path) -> None:
    suite = tmp_path / "test_suite.py"
    suite.write_text(SUITE)
    checks = parse_checks(
        [
            {"kind": "command", "argv": ["true"]},
            {"kind": "command", "argv": ["id", "-u"]},
            {"kind": "stale-processes"},
        ]
    )
    log: list[tuple[str, str]] = []
    pool, made = fake_pool(log, open_s=0.02)
    with pool, ThreadPoolExecutor(max_workers=3) as workers:
        jobs = [
            workers.submit(run_checks, TARGETS, checks, 10, pool=pool),
            workers.submit(run_suite, suite, TARGETS, 10, pool=pool),
            workers.submit(read_fingerprints, TARGETS, ["/etc/ssh/sshd_config"], 10, pool=pool),
        ]
        report, suite_report, (fps, errors) = (j.result() for j in jobs)
        assert not any(c.closed.is_set() for c in made)  # the pool's owner closes it
    assert {r.check: r.status for r in suite_report.results} == {
        "suite:test_suite.py::test_true": "pass",
        "suite:test_suite.py::test_echo": "pass",
    }
    assert len(report.results) == 9 and not errors and sorted(fps) == ["h1", "h2", "h3"]
    assert opens(log) == {"h1": 1, "h2": 1, "h3": 1}
    assert all(c.closed.is_set() for c in made)


def test_without_a_pool_each_call_closes_its_own(monkeypatch: pytest.MonkeyPatch) -> None:
    log: list[tuple[str, str]] = []
    made: list[FakeConnection] = []

    def connection(t: ProbeTarget, **_: Any) -> SSHConnection:
        conn = FakeConnection(t, log)
        made.append(conn)
        return conn

    monkeypatch.setattr("orchestrator.probes.pool.SSHConnection", connection)
    checks = parse_checks([{"kind": "command", "argv": ["true"]}])
    assert run_checks(TARGETS, checks, 10).ok
    fps, errors = read_fingerprints(TARGETS[:2], deadline_s=10)
    assert sorted(fps) == ["h1", "h2"] and not errors
    assert len(made) == 5 and all(c.closed.is_set() for c in made)


def test_deadline_ends_the_run_and_closes_its_connections() -> None:
    def hang(command: str) -> tuple[int, bytes, bytes]:
        if command.startswith("sleep"):
            time.sleep(2)
        return 0, b"", b""

    log: list[tuple[str, str]] = []
    made: list[FakeConnection] = []

    def connect(t: ProbeTarget) -> SSHConnection:
        conn = FakeConnection(t, log, reply=hang)
        made.append(conn)
        return conn

    checks = parse_checks([{"kind": "command", "argv": ["sleep", "5"]}])
    with ConnectionPool(connect=connect) as pool:
        report = run_checks(TARGETS[:1], checks, 0.3, pool=pool)
    assert not report.ok
    assert [(r.status, r.evidence) for r in report.results] == [
        ("error", "deadline exceeded after 0.3 s")
    ]
    assert made and all(c.closed.is_set() for c in made)


def test_a_connection_lost_mid_run_is_an_error_never_a_pass() -> None:
    log: list[tuple[str, str]] = []
    pool, made = fake_pool(log)
    checks = parse_checks([{"kind": "command", "argv": ["true"]}])
    with pool:
        assert run_checks(TARGETS[:1], checks, 10, pool=pool).ok
        made[0].closed.set()  # the host went away: the transport is gone
        report = run_checks(TARGETS[:1], checks, 10, pool=pool)
        fps, errors = read_fingerprints(TARGETS[:1], deadline_s=10, pool=pool)
    assert [(r.status, r.evidence) for r in report.results] == [("error", "connection was lost")]
    assert not fps and errors == {"h1": "connection was lost"}
    assert opens(log) == {"h1": 1}  # not reopened behind the run's back


def test_ssh_errors_on_a_dead_transport_say_the_connection_was_lost(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    class Transport:
        active = True

        def is_active(self) -> bool:
            return self.active

    transport = Transport()

    class Client:
        def get_transport(self) -> Transport:
            return transport

    def broken(*_: Any) -> tuple[int, bytes, bytes]:
        transport.active = False
        raise EOFError()

    conn = SSHConnection(TARGETS[0])
    conn._client = Client()  # type: ignore[assignment]
    monkeypatch.setattr(conn, "_run_on_channel", broken)
    with pytest.raises(ProbeConnectionError, match="connection to h1.invalid was lost"):
        conn.run("true", 5)

    transport.active = True

    def refused(*_: Any) -> tuple[int, bytes, bytes]:
        raise paramiko.SSHException("Unable to open channel.")

    monkeypatch.setattr(conn, "_run_on_channel", refused)
    with pytest.raises(ProbeConnectionError, match="ssh error with h1.invalid: Unable"):
        conn.run("true", 5)


def test_a_channel_closed_without_exit_status_is_no_result() -> None:
    """A dead connection must not read as "exit -1": `test -e`, `dpkg-query` and friends
    would then pass a suite's `not ...` assertions."""

    class Chan:
        closed = True
        eof_received = True

        def settimeout(self, _: float) -> None: ...
        def exec_command(self, _: object) -> None: ...
        def shutdown_write(self) -> None: ...
        def close(self) -> None: ...
        def recv_ready(self) -> bool:
            return False

        recv_stderr_ready = recv_ready

        def exit_status_ready(self) -> bool:
            return True  # paramiko: a closed channel is "ready", with exit status -1

        def recv_exit_status(self) -> int:
            return -1

    class Transport:
        active = True

        def is_active(self) -> bool:
            return self.active

        def open_session(self, timeout: float) -> Chan:
            return Chan()

    transport = Transport()

    class Client:
        def get_transport(self) -> Transport:
            return transport

    conn = SSHConnection(TARGETS[0])
    conn._client = Client()  # type: ignore[assignment]
    with pytest.raises(ProbeConnectionError, match="no exit status from h1.invalid for: test"):
        conn.run("test -e /etc/telnetd", 5)
    transport.active = False
    with pytest.raises(ProbeConnectionError, match="connection to h1.invalid was lost"):
        conn._run_on_channel(transport, "true", "true", 5, time.monotonic() + 5)  # type: ignore[arg-type]


# ---- suites through pytest, in-process -------------------------------------------------------
PYTEST_SUITE = '''
import pytest


@pytest.fixture(scope="module")
def name(host):
    return host.run("hostname").stdout.strip()


@pytest.fixture
def broken(host):
    raise RuntimeError("fixture boom")


def test_a(name):
    assert name == "h1"


@pytest.mark.parametrize("port", [22, 80])
def test_b(host, port):
    assert host.run(f"echo {port}").rc == 0


def test_c(broken):
    pass


@pytest.mark.skip(reason="not here")
def test_d(host):
    pass


class TestE:
    def test_e(self, host):
        assert host.run("true").rc == 0


def test_f(host):
    host.run("hang")


def test_no_host():
    print("to nobody's output")
'''


def named_reply(name: str) -> Reply:
    def reply(command: str) -> tuple[int, bytes, bytes]:
        if "hang" in command:
            from orchestrator.probes.connection import CommandTimeout

            raise CommandTimeout(command, 1.0)
        if "hostname" in command:
            return 0, f"{name}\n".encode(), b""
        return 0, b"", b""

    return reply


def test_any_testinfra_file_runs_through_pytest_over_the_pool(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    suite = tmp_path / "test_any.py"
    suite.write_text(PYTEST_SUITE)
    log: list[tuple[str, str]] = []

    def connect(t: ProbeTarget) -> SSHConnection:
        return FakeConnection(t, log, reply=named_reply(t.name))

    with ConnectionPool(connect=connect) as pool:
        report = run_suite(suite, TARGETS[:2], 10, pool=pool)
    got = {(r.host, r.check.split("::", 1)[1]): (r.status, r.evidence) for r in report.results}
    status = {k: v[0] for k, v in got.items()}
    for h in ("h1", "h2"):
        assert status[(h, "test_b[22]")] == status[(h, "test_b[80]")] == "pass"
        assert status[(h, "TestE::test_e")] == "pass"
        assert status[(h, "test_no_host")] == "pass"
        assert got[(h, "test_c")] == ("error", "setup: RuntimeError: fixture boom (test_any.py:12)")
        assert got[(h, "test_d")] == ("error", "setup: skipped: not here")  # never a pass
        assert status[(h, "test_f")] == "error"  # no answer is not a verdict
        assert "hang" in got[(h, "test_f")][1]
    assert status[("h1", "test_a")] == "pass"
    assert status[("h2", "test_a")] == "fail"
    assert "assert 'h2' == 'h1'" in got[("h2", "test_a")][1]
    assert opens(log) == {"h1": 1, "h2": 1}  # the pool's connections, nothing else
    assert "nobody" not in capsys.readouterr().out
    assert not report.ok


def test_a_suite_pytest_cannot_collect_is_an_error_on_every_host(tmp_path: Path) -> None:
    suite = tmp_path / "test_broken.py"
    suite.write_text("def test_x(host):\n    assert (\n")
    pool, _ = fake_pool([])
    with pool:
        report = run_suite(suite, TARGETS[:2], 10, pool=pool)
    assert [(r.host, r.status) for r in report.results] == [("h1", "error"), ("h2", "error")]
    assert "cannot collect the suite" in report.results[0].evidence
