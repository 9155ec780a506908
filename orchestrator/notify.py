"""Webhooks: JSON campaign events POSTed on a background thread.

Delivery never blocks the caller (a flip or a rollback must not wait for a slow receiver):
`send()` only queues. One worker thread delivers events in order, each with a short timeout
and a bounded number of retries (tenacity, exponential backoff with jitter). `close()` waits
a bounded time for the queue to drain, so a finished command does not lose its last events.
"""

from __future__ import annotations

import json
import queue
import threading
import urllib.error
import urllib.request
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any

from orchestrator.secrets import safe_url, scrub_data

EVENTS = ("started", "service_flipped", "rolled_back", "failed", "deferred", "done")


class Notifier:
    def __init__(
        self,
        urls: Sequence[str],
        *,
        timeout: float = 3.0,
        retries: int = 3,
        campaign: str = "",
        run_id: str = "",
        audit_head: Callable[[], str | None] | None = None,
    ) -> None:
        self.urls = list(urls)
        self.audit_head = audit_head
        """Each event carries the audit chain's head at that moment (SEQ:HASH): the
        receivers are witnesses outside the store."""
        self.timeout = timeout
        self.retries = retries
        self.campaign = campaign
        self.run_id = run_id
        self.delivered = 0
        self.failed: list[str] = []
        self._queue: queue.Queue[dict[str, Any] | None] = queue.Queue()
        self._thread: threading.Thread | None = None
        if self.urls:
            self._thread = threading.Thread(target=self._work, name="bluegreen-notify", daemon=True)
            self._thread.start()

    def send(self, event: str, **data: Any) -> None:
        """Queue one event; returns at once."""
        if self._thread is None:
            return
        head = self.audit_head() if self.audit_head is not None else None
        self._queue.put(
            {
                "event": event,
                "campaign": self.campaign,
                "run_id": self.run_id,
                "at": datetime.now(UTC).isoformat(),
                **({"audit_head": head} if head else {}),
                **scrub_data(data),
            }
        )

    def close(self, wait_seconds: float = 10.0) -> None:
        if self._thread is None:
            return
        self._queue.put(None)
        self._thread.join(timeout=wait_seconds)

    def _work(self) -> None:
        while True:
            doc = self._queue.get()
            if doc is None:
                return
            body = json.dumps(doc, default=str).encode()
            for url in self.urls:
                try:
                    self._deliver(url, body)
                    self.delivered += 1
                except Exception as exc:  # noqa: BLE001 - a receiver must never break a run
                    self.failed.append(f"{doc['event']} -> {safe_url(url)}: {exc}")

    def _deliver(self, url: str, body: bytes) -> None:
        from tenacity import (
            retry,
            retry_if_exception_type,
            stop_after_attempt,
            wait_exponential_jitter,
        )

        @retry(
            stop=stop_after_attempt(self.retries + 1),
            wait=wait_exponential_jitter(initial=0.2, max=2.0),
            retry=retry_if_exception_type(OSError),
            reraise=True,
        )
        def post() -> None:
            req = urllib.request.Request(
                url, data=body, method="POST", headers={"Content-Type": "application/json"}
            )
            with urllib.request.urlopen(req, timeout=self.timeout) as resp:
                resp.read(1024)

        post()
