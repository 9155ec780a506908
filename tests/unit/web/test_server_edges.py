"""The dashboard against an attacker's client (issue 21, item 11), on a real uvicorn on
127.0.0.1: a forged Host gets 421 (DNS rebinding), a client sending its headers slowly is cut
within the header deadline, a websocket is refused without the token, and the host rules."""

from __future__ import annotations

import asyncio
import base64
import os
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest

from orchestrator.errors import BadInput
from orchestrator.web.app import Guard, host_name
from orchestrator.web.protocol import HeaderDeadlineH11Protocol
from orchestrator.web.server import Listen, allowed_hosts, make_server, parse_allowed_host

TOKEN = "t0ken-that-is-long-enough"


async def hello(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """The app behind the guard: says who it answered."""
    if scope["type"] == "websocket":
        await send({"type": "websocket.accept"})
        await send({"type": "websocket.close", "code": 1000})
        return
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-type", b"text/plain")]})
    await send({"type": "http.response.body", "body": b"hello"})


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Served:
    def __init__(self, token: str | None, extra: tuple[str, ...] = ()) -> None:
        self.listen = Listen("127.0.0.1", free_port())
        app = Guard(hello, token, allowed_hosts(self.listen, extra))
        self.server = make_server(app, self.listen)
        self.thread = threading.Thread(target=self.server.run, daemon=True)
        self.thread.start()
        deadline = time.monotonic() + 10
        while not self.server.started:
            assert time.monotonic() < deadline, "uvicorn did not start"
            time.sleep(0.02)

    def raw(self, request: bytes, timeout: float = 10) -> bytes:
        with socket.create_connection(("127.0.0.1", self.listen.port), timeout=timeout) as s:
            s.sendall(request)
            chunks = []
            while chunk := s.recv(65536):
                chunks.append(chunk)
            return b"".join(chunks)

    def get(self, host: str, headers: str = "") -> bytes:
        return self.raw(f"GET / HTTP/1.1\r\nHost: {host}\r\n{headers}Connection: close\r\n\r\n"
                        .encode())

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)


@pytest.fixture
def served() -> Iterator[Served]:
    s = Served(None, ("dash.example.net",))
    yield s
    s.stop()


def test_only_the_listen_address_localhost_and_allowed_hosts_are_answered(
    served: Served
) -> None:
    port = served.listen.port
    for host in (f"127.0.0.1:{port}", f"localhost:{port}", "localhost",
                 f"dash.example.net:{port}", "DASH.example.net."):
        assert served.get(host).startswith(b"HTTP/1.1 200"), host
    # DNS rebinding: the attacker's name resolves to 127.0.0.1, the browser sends it
    for host in (f"evil.example:{port}", "127.0.0.1.evil.example", "[::1]", "attacker"):
        answer = served.get(host)
        assert answer.startswith(b"HTTP/1.1 421"), (host, answer)
        assert b"hello" not in answer
    # no Host at all (HTTP/1.0)
    answer = served.raw(b"GET / HTTP/1.0\r\n\r\n")
    assert answer.startswith(b"HTTP/1.1 421"), answer


def test_a_client_sending_headers_slowly_is_cut_within_the_deadline(served: Served) -> None:
    started = time.monotonic()
    with socket.create_connection(("127.0.0.1", served.listen.port), timeout=15) as s:
        s.sendall(b"GET / HTTP/1.1\r\nHost: localhost\r\n")
        cut = False
        for _ in range(40):  # a header line every 0.5 s: 20 s if nothing cuts it
            try:
                s.sendall(b"X-Slow: 1\r\n")
                time.sleep(0.5)
                if s.recv(1, socket.MSG_DONTWAIT | socket.MSG_PEEK) == b"":
                    cut = True
                    break
            except BlockingIOError:
                continue
            except OSError:
                cut = True
                break
    took = time.monotonic() - started
    assert cut, "the slow client was never cut"
    assert took < HeaderDeadlineH11Protocol.header_timeout_s + 3, took
    # and a normal request on a kept-alive connection still works after the first
    with socket.create_connection(("127.0.0.1", served.listen.port), timeout=10) as s:
        for _ in range(2):
            s.sendall(b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n")
            answer = b""
            while not answer.endswith(b"0\r\n\r\n"):  # the end of the chunked body
                chunk = s.recv(65536)
                assert chunk, answer
                answer += chunk
            assert answer.startswith(b"HTTP/1.1 200") and b"hello" in answer, answer


def _websocket(served: Served, headers: str = "") -> bytes:
    key = base64.b64encode(os.urandom(16)).decode()
    with socket.create_connection(("127.0.0.1", served.listen.port), timeout=10) as s:
        s.sendall((f"GET /ws HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\n"
                   f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
                   f"Sec-WebSocket-Version: 13\r\n{headers}\r\n").encode())
        return s.recv(65536)


def test_a_websocket_needs_the_token_and_an_allowed_host() -> None:
    served = Served(TOKEN)
    try:
        assert served.get("localhost").startswith(b"HTTP/1.1 401")
        answer = _websocket(served)
        assert answer.startswith(b"HTTP/1.1 403"), answer
        answer = _websocket(served, f"Authorization: Bearer {TOKEN}\r\n")
        assert answer.startswith(b"HTTP/1.1 101"), answer  # the guard let it through
    finally:
        served.stop()


def test_lifespan_passes_and_unknown_scopes_are_dropped() -> None:
    seen: list[str] = []

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        seen.append(scope["type"])

    async def nothing() -> dict[str, Any]:
        return {}

    async def ignore(message: Any) -> None:
        pass

    guard = Guard(app, TOKEN)
    for kind in ("lifespan", "something-new"):
        asyncio.run(guard({"type": kind}, nothing, ignore))
    assert seen == ["lifespan"]


def test_host_rules() -> None:
    assert host_name("[::1]:8088") == "::1" and host_name("Example.NET.:80") == "example.net"
    assert parse_allowed_host("Dash.Example.net") == "dash.example.net"
    assert parse_allowed_host("[::1]") == "::1"
    for bad in ("*.example.net", "dash.example.net:8088", "a b", ""):
        with pytest.raises(BadInput) as info:
            parse_allowed_host(bad)
        assert "--allowed-host" in str(info.value)
    assert allowed_hosts(Listen("10.0.0.5", 8088), ["dash"]) == {"10.0.0.5", "localhost",
                                                                 "dash"}
