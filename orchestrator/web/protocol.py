"""uvicorn's h11 protocol with a deadline for a request's headers.

h11 has no header timeout of its own, and uvicorn's keep-alive timer is cancelled by any data
that arrives: a client that sends its headers a byte at a time (slowloris) holds a
connection, and with `limit_concurrency` a slot, for ever, before the app (and so the token
check) ever runs. Here every connection must finish a request's headers within
`HEADER_TIMEOUT_S` of connecting, or of the end of the previous response; the deadline is not
moved by data that trickles in. A request whose headers are in is not timed by it.
"""

from __future__ import annotations

import asyncio
from typing import Any

import h11
from uvicorn.protocols.http.h11_impl import H11Protocol

HEADER_TIMEOUT_S = 5.0


class HeaderDeadlineH11Protocol(H11Protocol):
    """`H11Protocol` that closes a connection whose request headers are late."""

    header_timeout_s = HEADER_TIMEOUT_S

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._headers_due: asyncio.TimerHandle | None = None

    def _arm(self) -> None:
        self._disarm()
        self._headers_due = self.loop.call_later(self.header_timeout_s, self._headers_late)

    def _disarm(self) -> None:
        if self._headers_due is not None:
            self._headers_due.cancel()
            self._headers_due = None

    def _headers_late(self) -> None:
        self._headers_due = None
        if not self.transport.is_closing():
            self.transport.close()

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm()

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        if self.conn.their_state is not h11.IDLE:  # a request's headers are complete
            self._disarm()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        if not self.transport.is_closing() and self.conn.their_state is h11.IDLE:
            self._arm()  # the next request's headers are due in time too

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)
