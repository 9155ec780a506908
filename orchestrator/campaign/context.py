"""What every part of one campaign run shares while a process drives it: the config and
the inventory, the actor and the clock, this thread's state store and router (a parallel
wave's worker has its own), the progress callback, the webhooks, and the run's ending
bookkeeping (abort check, failure)."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime
from typing import TYPE_CHECKING, Any

from orchestrator.campaign.events import Aborted, CampaignEvent, CampaignResult, emit
from orchestrator.config.loaded import LoadedConfig
from orchestrator.inventory import Fleet
from orchestrator.routers.base import Router
from orchestrator.state.base import StateStore

if TYPE_CHECKING:
    from orchestrator.notify import Notifier


class RunContext:
    def __init__(
        self,
        config: LoadedConfig,
        store: StateStore,
        router: Router,
        *,
        fleet: Fleet,
        actor: str,
        clock: Callable[[], datetime],
        on_event: Callable[[CampaignEvent], None],
        notifier: Notifier,
    ) -> None:
        self.config = config
        self.fleet = fleet
        self.actor = actor
        self.clock = clock
        self.on_event = on_event
        self.notifier = notifier
        self._store = store
        self._router = router
        self._local = threading.local()  # a parallel wave's worker: its own store and router

    @property
    def store(self) -> StateStore:
        """This thread's state store (a parallel wave's worker has its own connection)."""
        own: StateStore | None = getattr(self._local, "store", None)
        return own if own is not None else self._store

    @property
    def router(self) -> Router:
        """This thread's router (routers are not thread-safe: one per worker)."""
        own: Router | None = getattr(self._local, "router", None)
        return own if own is not None else self._router

    @contextmanager
    def worker(self) -> Iterator[None]:
        """A parallel wave's worker thread: its own store connection and router while in
        here, both closed on the way out."""
        from orchestrator.traffic import store_and_router

        with store_and_router(self.config) as (self._local.store, self._local.router):
            try:
                yield
            finally:
                del self._local.store, self._local.router

    def emit(self, kind: str, message: str, data: dict[str, Any] | None = None) -> None:
        emit(self.on_event, kind, message, data)

    def check_not_aborted(self, run_id: str) -> None:
        run = self.store.get_run(run_id)
        if run is not None and run.status == "aborted":
            raise Aborted(f"campaign run {run_id} was aborted: {run.result or ''}")

    def fail(self, run_id: str, msg: str, code: int, result: CampaignResult) -> None:
        """The run ends failed (exit `code`)."""
        self.store.finish_run(run_id, "failed", msg)
        self.notifier.send("failed", error=msg)
        result.status, result.message, result.exit_code = "failed", msg, code
