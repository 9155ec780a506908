"""A real HAProxy on loopback in front of two tiny HTTP backends (blue and green).

    with running_haproxy(tmp_path) as lb:
        settings = lb.settings()          # HAProxySettings for the admin socket
        lb.get("/")                       # -> ("web_blue", "blue")
        lb.reload(); lb.restart()

HAProxy runs as `haproxy -W -db -f CFG` in its own session; only the PID started here is
ever signalled. Every wait has a deadline.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import TYPE_CHECKING, Any

from orchestrator.routers.haproxy.settings import HAProxySettings

if TYPE_CHECKING:
    from orchestrator.routers.haproxy.router import HAProxyRouter
from orchestrator.sides import SIDES, Side

HAPROXY = "/usr/sbin/haproxy"
SERVICE = "web"
HEADER = "X-Bluegreen-Backend"


def wait_until(predicate: Callable[[], Any], timeout: float, what: str, step: float = 0.05) -> Any:
    """Poll `predicate` until it returns a truthy value; AssertionError after `timeout`."""
    deadline = time.monotonic() + timeout
    last: BaseException | None = None
    while True:
        try:
            value = predicate()
            if value:
                return value
        except Exception as exc:  # keep polling; report the last error on timeout
            last = exc
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}; last: {last!r}")
        time.sleep(step)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class _SideHandler(BaseHTTPRequestHandler):
    server: _SideServer

    def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
        body = b"ok\n" if self.path == "/health" else self.server.side.encode() + b"\n"
        if self.path != "/health" and self.server.delay:
            time.sleep(self.server.delay)  # a slow version: users' requests only
        self.send_response(200)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
        """Quiet."""


class _SideServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, side: Side, port: int) -> None:
        self.side = side
        self.delay = 0.0
        super().__init__(("127.0.0.1", port), _SideHandler)

    def handle_error(self, request: Any, client_address: Any) -> None:
        """Quiet: health checks and reloads reset connections on purpose."""


class Backend:
    """One side's HTTP server, in a thread of this process; can be stopped and restarted."""

    def __init__(self, side: Side) -> None:
        self.side = side
        self.port = free_port()
        self._server: _SideServer | None = None
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        server = wait_until(
            lambda: _SideServer(self.side, self.port), 5, f"port {self.port} for {self.side}"
        )
        self._server = server
        self._thread = threading.Thread(target=server.serve_forever, daemon=True)
        self._thread.start()

    def slow(self, seconds: float) -> None:
        """Answer every request but health checks `seconds` later (0: at once)."""
        assert self._server is not None, "start the backend first"
        self._server.delay = seconds

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None


CONFIG = """\
global
    stats socket {dir}/admin.sock mode 600 level admin
    stats socket {dir}/user.sock mode 600 level user
    server-state-file {dir}/server-state
    log stderr format raw local0 warning

defaults
    mode http
    log global
    timeout connect 2s
    timeout client 10s
    timeout server 10s
    load-server-state-from-file global

frontend fe_web
    bind 127.0.0.1:{port}
    http-response set-header {header} %b
{routing}

backend {service}_blue
    option httpchk GET /health
    server blue1 127.0.0.1:{blue_port} check inter 500ms fall 2 rise 1

backend {service}_green
    option httpchk GET /health
    server green1 127.0.0.1:{green_port} check inter 500ms fall 2 rise 1
"""


class HAProxyLab:
    def __init__(self, directory: Path, exposure: bool = False) -> None:
        self.exposure = exposure
        self.dir = directory
        self.port = free_port()
        self.backends: dict[Side, Backend] = {side: Backend(side) for side in SIDES}
        self.cfg = directory / "haproxy.cfg"
        self.map_file = directory / "bluegreen.map"
        self.server_state_file = directory / "server-state"
        self.admin_socket = directory / "admin.sock"
        self.user_socket = directory / "user.sock"
        self.log = directory / "haproxy.log"
        self.pid: int | None = None
        self._process: subprocess.Popen[bytes] | None = None

    # -- files and process --------------------------------------------------------------
    def write_files(self) -> None:
        from orchestrator.routers.haproxy.exposure import config_lines

        routing = [f"use_backend %[str({SERVICE}),map({self.map_file},{SERVICE}_blue)]"]
        if self.exposure:  # the exposure maps (progressive steps, preview) in front of it
            settings = self.settings()
            routing = config_lines(SERVICE, f"{SERVICE}_blue", str(self.map_file),
                                   settings.percent_map(), settings.exposed_map())
            for path in (settings.percent_map(), settings.exposed_map()):
                Path(path).write_text("")
        self.cfg.write_text(
            CONFIG.format(
                dir=self.dir,
                port=self.port,
                header=HEADER,
                service=SERVICE,
                routing="\n".join(f"    {line}" for line in routing),
                blue_port=self.backends["blue"].port,
                green_port=self.backends["green"].port,
            )
        )
        self.map_file.write_text(f"{SERVICE} {SERVICE}_blue\n")

    def settings(self, **overrides: Any) -> HAProxySettings:
        values: dict[str, Any] = {
            "kind": "haproxy",
            "socket": f"unix://{self.admin_socket}",
            "map_file": str(self.map_file),
            "server_state_file": str(self.server_state_file),
            "frontends": {SERVICE: self.url("/")},
            "timeout": 2.0,
        }
        values.update(overrides)
        return HAProxySettings(**values)

    def start_haproxy(self) -> None:
        check = subprocess.run(
            [HAPROXY, "-c", "-q", "-f", str(self.cfg)], capture_output=True, text=True, timeout=10
        )
        assert check.returncode == 0, f"haproxy -c failed: {check.stdout}{check.stderr}"
        with self.log.open("ab") as log:
            self._process = subprocess.Popen(
                [HAPROXY, "-W", "-db", "-f", str(self.cfg)],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=log,
                start_new_session=True,
            )
        self.pid = self._process.pid
        self.wait_ready()

    def stop_haproxy(self) -> None:
        process, self._process = self._process, None
        if process is None:
            return
        if process.poll() is None:
            os.kill(process.pid, signal.SIGTERM)  # the master stops its workers
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.kill(process.pid, signal.SIGKILL)
                process.wait(timeout=10)
        self.pid = None

    # -- runtime API (independent of the code under test) -----------------------------
    def admin(self, command: str, socket_path: Path | None = None) -> str:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(2)
            sock.connect(str(socket_path or self.admin_socket))
            sock.sendall(command.encode() + b"\n")
            chunks = []
            while chunk := sock.recv(65536):
                chunks.append(chunk)
        return b"".join(chunks).decode()

    def worker_pid(self) -> int:
        for line in self.admin("show info").splitlines():
            if line.startswith("Pid:"):
                return int(line.split(":", 1)[1])
        raise AssertionError("no Pid in show info")

    def server_status(self, side: Side) -> str:
        for line in self.admin("show stat").splitlines():
            fields = line.split(",")
            if len(fields) > 17 and fields[0] == f"{SERVICE}_{side}" and fields[1] != "BACKEND":
                return fields[17]
        raise AssertionError(f"no server for {side} in show stat")

    def wait_status(self, side: Side, status: str, timeout: float = 10) -> None:
        """Wait for the exact status ("UP", not the transitional "UP 1/2")."""
        wait_until(lambda: self.server_status(side) == status, timeout, f"{side} server {status}")

    def wait_ready(self, timeout: float = 10) -> None:
        def ready() -> bool:
            assert self._process is not None
            if self._process.poll() is not None:
                raise AssertionError(
                    f"haproxy exited {self._process.returncode}: {self.log.read_text()[-2000:]}"
                )
            self.worker_pid()
            return self.get("/")[1] in SIDES

        try:
            wait_until(ready, timeout, "haproxy to serve")
        except AssertionError as exc:
            raise AssertionError(f"{exc}\nlog: {self.log.read_text()[-2000:]}") from exc

    # -- traffic ----------------------------------------------------------------------
    def url(self, path: str = "/") -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def get(self, path: str = "/", timeout: float = 2) -> tuple[str | None, str]:
        """(backend header, body) of one request through the frontend."""
        with urllib.request.urlopen(self.url(path), timeout=timeout) as response:  # noqa: S310
            return response.headers.get(HEADER), response.read().decode().strip()

    def serving(self) -> Side:
        """The side that answered a request through the frontend."""
        header, body = self.get("/")
        assert header == f"{SERVICE}_{body}", (header, body)
        assert body in SIDES, body
        return body  # type: ignore[return-value]

    # -- lifecycle --------------------------------------------------------------------
    def reload(self, timeout: float = 10) -> None:
        """SIGUSR2 to the master; wait until a new worker serves."""
        assert self.pid is not None
        old = self.worker_pid()
        os.kill(self.pid, signal.SIGUSR2)
        wait_until(lambda: self.worker_pid() != old, timeout, "a new haproxy worker")
        self.wait_ready(timeout)

    def restart(self) -> None:
        """Stop the process and start a new one with the same files."""
        self.stop_haproxy()
        self.start_haproxy()


@contextmanager
def running_haproxy(directory: Path, wait_healthy: bool = True, *,
                    exposure: bool = False) -> Iterator[HAProxyLab]:
    """`exposure`: the frontend also has the exposure maps' lines (progressive steps)."""
    lab = HAProxyLab(directory, exposure)
    try:
        for backend in lab.backends.values():
            backend.start()
        lab.write_files()
        lab.start_haproxy()
        if wait_healthy:
            for side in SIDES:
                lab.wait_status(side, "UP")
        yield lab
    finally:
        lab.stop_haproxy()
        for backend in lab.backends.values():
            backend.stop()


@contextmanager
def haproxy_and_router(directory: Path, *, exposure: bool = False
                       ) -> Iterator[tuple[HAProxyLab, HAProxyRouter]]:
    """`running_haproxy` with a router on its admin socket, closed on exit."""
    from orchestrator.routers.haproxy.router import HAProxyRouter

    with running_haproxy(directory, exposure=exposure) as lab:
        router = HAProxyRouter(lab.settings())
        try:
            yield lab, router
        finally:
            router.close()


def flips_under_requests(
    get: Callable[[], tuple[str | None, str]], flip: Callable[[Side], Any], *, flips: int,
    pause: float, seconds: float, most: int,
) -> tuple[dict[str, int], list[str]]:
    """Flip `flips` times (green, blue, ...) while one client sends requests through the
    frontend (at most `most`, for at most `seconds`); (served per side, failures). A reply
    whose backend header does not name the side that answered is a failure too."""
    failures: list[str] = []
    served = {"blue": 0, "green": 0}
    stop = threading.Event()

    def traffic() -> None:
        deadline = time.monotonic() + seconds
        for _ in range(most):
            if stop.is_set() or time.monotonic() > deadline:
                return
            try:
                header, body = get()
                if header != f"{SERVICE}_{body}":
                    failures.append(f"mismatch {header} {body}")
                else:
                    served[body] += 1
            except (OSError, urllib.error.URLError) as exc:
                failures.append(repr(exc))

    sender = threading.Thread(target=traffic)
    sender.start()
    try:
        for i in range(flips):
            flip("green" if i % 2 == 0 else "blue")
            time.sleep(pause)
    finally:
        stop.set()
        sender.join(timeout=seconds + 5)
    assert not sender.is_alive(), "the request loop did not stop"
    return served, failures
