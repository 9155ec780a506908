"""One strict SSH connection per host for one probe run, shared by everything the run does.

A probe run (one verification gate: built-in checks, in-process user suites and drift, or a
drift/baseline read alone) opens each host's connection lazily, the first time any part of
the run asks for it, and every other part then runs its commands on further channels of
that same connection. The pool is closed at the end of the run, also on errors and
deadlines; what still runs then is cut off and reported as an error by its caller.

A host is connected at most once per run: when that fails, every later ask for the host
gets the same `ProbeConnectionError` (the reason is the evidence); a connection that dies
during the run is not reopened, its commands fail with "connection ... was lost". Either
way the host fails, never passes. User suites run through pytest in this process
(`suites.run_suite`) on these same connections.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor, wait
from typing import TypeVar

from orchestrator.probes.base import ProbeTarget
from orchestrator.probes.connection import ProbeConnectionError, SSHConnection

T = TypeVar("T")

POOL_CHANNELS = 8
"""Concurrent commands on a pooled connection: checks, suites and drift share it; still
below sshd's default MaxSessions (10)."""


class _Slot:
    """One host's connection, or why it could not be made."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.conn: SSHConnection | None = None
        self.error: ProbeConnectionError | None = None


class ConnectionPool:
    """Lazily opened, shared, thread-safe strict connections; closed on exit."""

    def __init__(
        self,
        *,
        max_channels: int = POOL_CHANNELS,
        connect: Callable[[ProbeTarget], SSHConnection] | None = None,
    ) -> None:
        self._connect = connect or (lambda t: SSHConnection(t, max_channels=max_channels))
        self._lock = threading.Lock()
        self._slots: dict[ProbeTarget, _Slot] = {}
        self._closed = False
        self.opened = 0
        """Connections made (for tests and measurements)."""

    def __enter__(self) -> ConnectionPool:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def _ended(self, target: ProbeTarget) -> ProbeConnectionError:
        return ProbeConnectionError(
            f"probe run ended before {target.known_hosts_name} was probed", reason="ssh"
        )

    def get(self, target: ProbeTarget, timeout: float | None = None) -> SSHConnection:
        """The target's connection, opened on first use (`timeout`: for that connect).

        Raises ProbeConnectionError: the host could not be connected (now or earlier in
        this run), or the run has ended.
        """
        with self._lock:
            if self._closed:
                raise self._ended(target)
            slot = self._slots.setdefault(target, _Slot())
        with slot.lock:  # other hosts connect meanwhile; this one only once
            if slot.conn is not None:
                return slot.conn
            if slot.error is not None:  # a copy: threads must not share one traceback
                e = slot.error
                raise ProbeConnectionError(e.message, reason=e.reason, hint=e.hint) from e
            conn = self._connect(target)
            try:
                conn.open(timeout=timeout)
            except ProbeConnectionError as exc:
                slot.error = exc
                raise
            with self._lock:
                self.opened += 1
                if self._closed:  # closed while connecting: do not leak it
                    conn.close()
                    slot.error = self._ended(target)
                    raise slot.error
                slot.conn = conn
            return conn

    def close(self) -> None:
        """Close every connection; later `get`s fail. Safe to call more than once."""
        with self._lock:
            self._closed = True
            conns = [s.conn for s in self._slots.values() if s.conn is not None]
        for conn in conns:
            conn.close()


@contextlib.contextmanager
def shared(pool: ConnectionPool | None) -> Iterator[ConnectionPool]:
    """`pool` as it is (its owner closes it), or a pool of our own closed on exit."""
    if pool is not None:
        yield pool
        return
    with ConnectionPool() as own:
        yield own


def per_host(
    probe: Callable[[ProbeTarget], T],
    targets: Sequence[ProbeTarget],
    concurrency: int,
    deadline: float,
) -> tuple[dict[Future[T], ProbeTarget], set[Future[T]]]:
    """`probe` on every target, at most `concurrency` hosts at once, until `deadline` (a
    `time.monotonic()` value): (futures, the ones done). Stragglers are not waited for:
    their channel timeouts, or the close of the run's pool, end them."""
    workers = ThreadPoolExecutor(
        max_workers=max(1, min(concurrency, len(targets))), thread_name_prefix="probe"
    )
    futures = {workers.submit(probe, t): t for t in targets}
    try:
        done, _ = wait(futures, timeout=max(0.0, deadline - time.monotonic()))
    finally:
        workers.shutdown(wait=False, cancel_futures=True)
    return futures, done
