"""`bluegreen serve` and `bluegreen metrics`: the address and token rules, the sources the
snapshot is read from, and uvicorn.

Loopback by default; any other address needs a token (a file readable by its owner only,
or `$BLUEGREEN_SERVE_TOKEN`), and `serve` says at start which applies. Only the listen
address, localhost and the `--allowed-host` names are answered (a request naming another
`Host:` gets 421: DNS rebinding). uvicorn runs with a concurrency limit, a short keep-alive
and a deadline for a request's headers (`web.protocol`: a slow client is cut). The server's store
connection waits at most `READ_BUSY_MS` for a busy database, then shows the last snapshot
as stale: it never queues behind the engine.
"""

from __future__ import annotations

import ipaddress
import os
import re
import stat
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from orchestrator.errors import BadInput, StateError
from orchestrator.routers.base import Router
from orchestrator.state.base import StateStore

if TYPE_CHECKING:
    import uvicorn
    from starlette.types import ASGIApp

    from orchestrator.config.loaded import LoadedConfig
    from orchestrator.web.workers import WorkersReader

DEFAULT_LISTEN = "127.0.0.1:8088"
MAX_CONNECTIONS = 64  # more at once get 503: a dashboard has a handful of viewers
KEEP_ALIVE_S = 5
_HOST_NAME = re.compile(r"(?=.{1,253}$)[a-z0-9]([a-z0-9-]{0,62}[a-z0-9])?(\.[a-z0-9]([a-z0-9-]{0,62}[a-z0-9])?)*\.?")
TOKEN_ENV = "BLUEGREEN_SERVE_TOKEN"
READ_BUSY_MS = 300


@dataclass(frozen=True)
class Listen:
    host: str
    port: int

    @property
    def loopback(self) -> bool:
        return self.host == "localhost" or ipaddress.ip_address(self.host).is_loopback

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}/"


def parse_listen(text: str) -> Listen:
    """HOST:PORT (an IP address or localhost; [v6]:PORT), or BadInput naming the fix."""
    host, sep, port = text.rpartition(":")
    host = host.strip("[]")
    fix = "give --listen HOST:PORT, e.g. 127.0.0.1:8088 or [::1]:8088"
    if not sep or not port.isdigit() or not 0 < int(port) < 65536:
        raise BadInput(f"--listen {text!r}: not HOST:PORT with a port 1-65535", hint=fix)
    if host != "localhost":
        try:
            ipaddress.ip_address(host)
        except ValueError:
            raise BadInput(f"--listen {text!r}: {host!r} is not an IP address",
                           hint=fix + " (an address, not a name)") from None
    return Listen(host, int(port))


def parse_allowed_host(text: str) -> str:
    """`--allowed-host NAME`: a DNS name or an IP address the dashboard answers for (as
    the browser sends it in `Host:`); BadInput otherwise."""
    value = text.strip().lower()
    try:
        return str(ipaddress.ip_address(value.strip("[]")))
    except ValueError:
        pass
    if not _HOST_NAME.fullmatch(value):
        raise BadInput(f"--allowed-host {text!r}: not a host name or IP address",
                       hint="give the name the browser uses, e.g. --allowed-host "
                            "dash.example.net (no port, no wildcard)")
    return value.rstrip(".")


def allowed_hosts(listen: Listen, extra: Sequence[str] = ()) -> frozenset[str]:
    """The hosts a request may name: the listen address, localhost, and `extra`."""
    return frozenset({listen.host, "localhost", *extra})


@dataclass(frozen=True)
class Token:
    value: str
    source: str


def resolve_token(listen: Listen, token_file: str | None,
                  environ: dict[str, str] | None = None) -> Token | None:
    """The token from --token-file or the environment; required off loopback."""
    env = os.environ if environ is None else environ
    token: Token | None = None
    if token_file is not None:
        token = Token(_read_token_file(Path(token_file)), f"file {token_file}")
    elif env.get(TOKEN_ENV):
        token = Token(env[TOKEN_ENV].strip(), f"${TOKEN_ENV}")
    if token is not None and len(token.value) < 16:
        raise BadInput(f"the serve token ({token.source}) is shorter than 16 characters",
                       hint="use a long random token, e.g. `openssl rand -hex 24`")
    if token is None and not listen.loopback:
        raise BadInput(
            f"--listen {listen.host}:{listen.port} is not a loopback address: a token is "
            "required",
            hint=f"give --token-file FILE (mode 0600) or set {TOKEN_ENV}; or listen on "
                 "127.0.0.1 and put a TLS proxy in front")
    return token


def _read_token_file(path: Path) -> str:
    try:
        st = path.stat()
        text = path.read_text(encoding="utf-8").strip()
    except OSError as exc:
        raise BadInput(f"--token-file {path}: cannot be read: {exc.strerror}",
                       hint="give a file holding the token (mode 0600)") from exc
    except UnicodeDecodeError:
        raise BadInput(f"--token-file {path}: not UTF-8 text",
                       hint="write the token as one line of text") from None
    if st.st_mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise BadInput(f"--token-file {path}: readable or writable by others "
                       f"(mode {stat.S_IMODE(st.st_mode):o})", hint=f"chmod 600 {path}")
    if not text:
        raise BadInput(f"--token-file {path}: empty", hint="write the token into it")
    return text


def sources(config: LoadedConfig) -> Callable[[], tuple[StateStore, Router]]:
    """Opens the store (short busy wait, never a write) and the router, on the caller's
    thread."""

    def open_both() -> tuple[StateStore, Router]:
        from orchestrator.state.registry import open_store
        from orchestrator.traffic.connect import open_router

        store = open_store(config.state, busy_timeout_ms=READ_BUSY_MS,
                           audit_key_file=config.audit.key_file)
        return store, open_router(config)

    return open_both


def workers(config: LoadedConfig) -> WorkersReader | None:
    """The sites' workers for the views: from the shared PostgreSQL store; None (not
    shown) for a SQLite store."""
    from orchestrator.web.workers import reader

    return reader(config.state)


def exposure_file(config: LoadedConfig) -> Path:
    """Where `bluegreen exposure` leaves its newest measurement for the views."""
    from orchestrator.advisories.measured import path_in

    return path_in(config.advisories_cache_path)


def startup_message(listen: Listen, token: Token | None) -> str:
    guard = (f"token required (Authorization: Bearer, or basic auth with the token as "
             f"password), from {token.source}") if token else "loopback only, no token"
    return f"bluegreen serve: read-only dashboard on {listen.url} ({guard}); Ctrl-C stops"


def run_server(config: LoadedConfig, listen: Listen, token: Token | None,
               interval_s: float, say: Callable[[str], None],
               extra_hosts: Sequence[str] = ()) -> None:
    """Serve until interrupted."""
    from orchestrator.web.app import create_app
    from orchestrator.web.refresher import Snapshots

    snapshots = Snapshots(sources(config), sorted(config.services), interval_s=interval_s,
                          exposure_file=exposure_file(config), workers=workers(config))
    snapshots.start()
    app = create_app(snapshots, token=token.value if token else None,
                     allowed_hosts=allowed_hosts(listen, extra_hosts))
    server = make_server(app, listen)
    say(startup_message(listen, token))
    try:
        server.run()
    finally:
        snapshots.stop()


def make_server(app: ASGIApp, listen: Listen) -> uvicorn.Server:
    """uvicorn for the dashboard: a concurrency limit, a short keep-alive, and a deadline
    for the request headers (`web.protocol`)."""
    import uvicorn

    from orchestrator.web.protocol import HeaderDeadlineH11Protocol

    return uvicorn.Server(uvicorn.Config(
        app, host=listen.host, port=listen.port, log_level="warning", access_log=False,
        server_header=False, date_header=False, lifespan="off",
        http=HeaderDeadlineH11Protocol, limit_concurrency=MAX_CONNECTIONS,
        timeout_keep_alive=KEEP_ALIVE_S))


def metrics_text(config: LoadedConfig) -> bytes:
    """One snapshot now, in the Prometheus text format (for the textfile collector)."""
    from orchestrator.web.metrics import SnapshotCollector, exposition
    from orchestrator.web.refresher import Snapshots, utc_now

    snapshots = Snapshots(sources(config), sorted(config.services),
                          exposure_file=exposure_file(config), workers=workers(config))
    try:
        if not snapshots.refresh():
            raise StateError(f"the state store could not be read: {snapshots.problem}",
                             hint="retry; no file was written")
        return exposition(SnapshotCollector(snapshots.current, utc_now))
    finally:
        snapshots.stop()
