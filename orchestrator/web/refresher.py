"""One background thread reads a `Snapshot` every few seconds; requests only look at the
newest one. So a page view never touches the store or the router, any number of viewers
cost one reader, and a busy store (a writer holding it, a disk stall) makes the server
show the last good snapshot as "stale since T" instead of hanging or failing."""

from __future__ import annotations

import threading
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

from orchestrator.advisories import measured
from orchestrator.errors import BluegreenError
from orchestrator.routers.base import Router
from orchestrator.state.base import StateStore
from orchestrator.web.snapshot import Measured, Snapshot, read_snapshot
from orchestrator.web.workers import WorkersReader

Sources = Callable[[], tuple[StateStore, Router]]


def utc_now() -> datetime:
    return datetime.now(UTC)


class Snapshots:
    """The newest snapshot, refreshed by `run()` on its own thread (each read opens the
    store and the router on that thread and closes them)."""

    def __init__(self, sources: Sources, services: list[str], *, interval_s: float = 2.0,
                 clock: Callable[[], datetime] = utc_now,
                 exposure_file: Path | None = None,
                 workers: WorkersReader | None = None) -> None:
        """`exposure_file`: where `bluegreen exposure` leaves its newest measurement
        (`advisories.measured`); None: exposure is not shown. `workers`: reads the sites'
        workers (`web.workers.reader`); None: not shown (a SQLite store has none)."""
        self._workers = workers
        self._sources = sources
        self._exposure_file = exposure_file
        self._services = services
        self.interval_s = interval_s
        self._clock = clock
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._ready = threading.Event()
        self._snapshot: Snapshot | None = None
        self._stale_since: datetime | None = None
        self.problem: str | None = None
        self._opened: tuple[StateStore, Router] | None = None
        self._thread: threading.Thread | None = None

    def current(self) -> tuple[Snapshot | None, datetime | None]:
        """(newest snapshot or None before the first read, stale since when or None)."""
        with self._lock:
            return self._snapshot, self._stale_since

    def wait_ready(self, timeout_s: float) -> bool:
        return self._ready.wait(timeout_s)

    def refresh(self) -> bool:
        """Read once; True when it worked. Never raises for a busy or broken store."""
        now = self._clock()
        try:
            # opened for each read and closed after it: between reads the server holds
            # nothing of the store, not even the shared lock an open WAL connection keeps
            self._opened = self._sources()
            store, router = self._opened
            measured, measured_problem = self._measured()
            snap = read_snapshot(self._services, store, router, now, measured, measured_problem,
                                 self._workers)
        except Exception as exc:  # noqa: BLE001 - the thread must live on; shown as stale
            message = exc.message if isinstance(exc, BluegreenError) else (
                f"{type(exc).__name__}: {exc}")
            with self._lock:
                if self._stale_since is None:
                    self._stale_since = self._snapshot.read_at if self._snapshot else now
                self.problem = message
            self._ready.set()
            return False
        finally:
            self._close()
        with self._lock:
            self._snapshot, self._stale_since, self.problem = snap, None, None
        self._ready.set()
        return True

    def _measured(self) -> tuple[Measured | None, str | None]:
        if self._exposure_file is None:
            return None, None
        try:
            return measured.load(self._exposure_file), None
        except measured.MeasurementUnreadable as exc:
            return None, exc.message

    def run(self) -> None:
        while not self._stop.is_set():
            self.refresh()
            self._stop.wait(self.interval_s)

    def start(self) -> None:
        self._thread = threading.Thread(target=self.run, name="bluegreen-snapshots",
                                        daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)

    def _close(self) -> None:
        if self._opened is not None:
            store, router = self._opened
            self._opened = None
            for close in (store.close, router.close):
                try:
                    close()
                except Exception:  # noqa: BLE001, S110 - closing a broken handle
                    pass
