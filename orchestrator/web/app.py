"""The read-only dashboard: a Starlette app over a `Snapshots` refresher.

Pages (`/`, `/audit`), the JSON API (`/api/v1/services|runs|campaigns|workers|audit`), `/metrics`
(Prometheus text format) and its own static files. Nothing here changes anything: every
method but GET and HEAD is refused with 405 before anything else runs. Only requests whose
`Host:` names the listen address, localhost or an `--allowed-host` are answered (others get
421: a web page the operator opens cannot reach the API through DNS rebinding). With a token
every request (websockets too; only the server's own lifespan events pass) needs it (`Authorization: Bearer TOKEN`, or HTTP basic auth with the token as the
password, which browsers ask for by themselves). Every response carries a CSP without
inline script (the pages update through /static/live.js; with scripts off a
<noscript> meta refresh does it), no framing, nosniff, no referrer, no caching.
"""

from __future__ import annotations

import base64
import binascii
import hmac
from collections.abc import Awaitable, Callable, Collection
from datetime import datetime
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, PlainTextResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from orchestrator.evidence.bake import measurement_rows, step_words
from orchestrator.evidence.report_html import TEMPLATES as EVIDENCE_TEMPLATES
from orchestrator.text import one_line
from orchestrator.web.metrics import SnapshotCollector, exposition
from orchestrator.web.refresher import Snapshots, utc_now
from orchestrator.web.snapshot import Snapshot, seconds_since

if TYPE_CHECKING:
    from jinja2 import Environment

HERE = Path(__file__).parent
READ_METHODS = ("GET", "HEAD")
SECURITY_HEADERS = {
    "content-security-policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; "
        "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
    ),
    "x-frame-options": "DENY",
    "x-content-type-options": "nosniff",
    "referrer-policy": "no-referrer",
    "cache-control": "no-store",
    "cross-origin-resource-policy": "same-origin",
}
API_VERSION = "v1"
LOOPBACK_HOSTS = frozenset({"localhost", "127.0.0.1", "::1"})


def host_name(header: str) -> str:
    """The host of a `Host:` header, lowercased, without port or trailing dot
    ("[::1]:8088" -> "::1")."""
    value = header.strip().lower()
    if value.startswith("["):
        end = value.find("]")
        value = value[1:end] if end > 0 else ""
    elif value.count(":") == 1:
        value = value.partition(":")[0]
    return value.rstrip(".")


class Guard:
    """Outermost ASGI layer: the Host, read-only methods, the token, the security headers.
    Every scope type is guarded: lifespan passes, websockets need an allowed Host and the
    token like HTTP (the app serves none), any other type is dropped."""

    def __init__(self, app: ASGIApp, token: str | None,
                 allowed_hosts: Collection[str] = LOOPBACK_HOSTS) -> None:
        self.app = app
        self.token = token
        self.allowed_hosts = frozenset(host_name(h) for h in allowed_hosts)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await self.app(scope, receive, send)
            return
        if scope["type"] == "websocket":
            if self._host_allowed(scope) and (self.token is None or self._authorized(scope)):
                await self.app(scope, receive, send)
            else:  # before the handshake: uvicorn answers 403
                await send({"type": "websocket.close", "code": 1008})
            return
        if scope["type"] != "http":
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = [(k, v) for k, v in message.get("headers", [])
                           if k.decode().lower() not in SECURITY_HEADERS]
                headers += [(k.encode(), v.encode()) for k, v in SECURITY_HEADERS.items()]
                message = {**message, "headers": headers}
            await send(message)

        if not self._host_allowed(scope):
            response: Response = PlainTextResponse(
                "421 this server does not answer for that Host\n", status_code=421)
        elif scope["method"] not in READ_METHODS:
            response = PlainTextResponse(
                "405 read-only: only GET and HEAD\n", status_code=405,
                headers={"allow": ", ".join(READ_METHODS)})
        elif self.token is not None and not self._authorized(scope):
            response = PlainTextResponse(
                "401 a token is required\n", status_code=401,
                headers={"www-authenticate": 'Basic realm="bluegreen", charset="UTF-8"'})
        else:
            await self.app(scope, receive, send_with_headers)
            return
        await response(scope, receive, send_with_headers)

    def _host_allowed(self, scope: Scope) -> bool:
        given = dict(scope.get("headers") or []).get(b"host")
        return given is not None and host_name(given.decode("latin-1")) in self.allowed_hosts

    def _authorized(self, scope: Scope) -> bool:
        assert self.token is not None
        given = dict(scope.get("headers") or []).get(b"authorization", b"").decode("latin-1")
        scheme, _, value = given.partition(" ")
        if scheme.lower() == "bearer":
            offered = value.strip()
        elif scheme.lower() == "basic":
            try:
                offered = base64.b64decode(value.strip(), validate=True).decode(
                    "utf-8").partition(":")[2]
            except (binascii.Error, UnicodeDecodeError):
                return False
        else:
            return False
        return hmac.compare_digest(offered.encode(), self.token.encode())


@cache
def environment() -> Environment:
    from jinja2 import ChoiceLoader, Environment, FileSystemLoader, StrictUndefined

    # the campaign report's templates too: the bake's measurements table is shared
    loader = ChoiceLoader([FileSystemLoader(str(HERE / "templates")),
                           FileSystemLoader(str(EVIDENCE_TEMPLATES))])
    env = Environment(loader=loader, autoescape=True,
                      undefined=StrictUndefined, trim_blocks=True, lstrip_blocks=True)
    env.filters["t"] = lambda v: one_line(None if v is None else str(v))
    env.filters["when"] = lambda d: "-" if d is None else (
        d if isinstance(d, str) else d.strftime("%Y-%m-%d %H:%M:%S UTC"))
    env.filters["ago"] = _ago
    env.filters["tone"] = _tone
    env.globals["measurement_rows"] = measurement_rows
    env.globals["step_words"] = step_words
    return env


def _instant(at: datetime | str | None) -> datetime | None:
    """A time from a view: a datetime, or ISO 8601 text (the JSON-shaped parts)."""
    return datetime.fromisoformat(at) if isinstance(at, str) else at


def _ago(seconds: float | None) -> str:
    if seconds is None:
        return "never"
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60)):
        if seconds >= size:
            return f"{seconds / size:.1f} {unit} ago"
    return f"{seconds:.0f} s ago"


GOOD = frozenset({"done", "verified", "ok", "live", "pass", "patched"})
BAD = frozenset({"failed", "verify_failed", "failed_live", "quarantined", "rolled_back",
                 "aborted", "broken", "interrupted", "unserved"})


def _tone(word: object) -> str:
    return "good" if word in GOOD else "bad" if word in BAD else "neutral"


def create_app(snapshots: Snapshots, *, token: str | None = None,
               clock: Callable[[], datetime] = utc_now,
               allowed_hosts: Collection[str] = LOOPBACK_HOSTS) -> ASGIApp:
    """The app behind its `Guard`; `allowed_hosts`: the names and addresses a request's
    `Host:` may give (the listen address, localhost, `--allowed-host`)."""
    collector = SnapshotCollector(snapshots.current, clock)

    def state() -> tuple[Snapshot | None, datetime | None]:
        return snapshots.current()

    def page(name: str) -> Callable[[Request], Awaitable[Response]]:
        async def render(request: Request) -> Response:
            snap, stale_since = state()
            if snap is None:
                return _starting(snapshots)
            now = clock()
            html = environment().get_template(name).render(
                s=snap, now=now, stale_since=stale_since, problem=snapshots.problem,
                since=lambda at: seconds_since(_instant(at), now), path=request.url.path,
                interval=snapshots.interval_s)
            return HTMLResponse(html)
        return render

    def api(part: str) -> Callable[[Request], Awaitable[Response]]:
        async def answer(request: Request) -> Response:
            snap, stale_since = state()
            if snap is None:
                return _starting(snapshots)
            now = clock()
            body: Any
            if part == "services":
                body = [s.as_json(now) for s in snap.services]
            elif part == "runs":
                body = [r.as_json() for r in snap.runs]
            elif part == "campaigns":
                body = [c.as_json() for c in snap.campaigns]
            elif part == "workers":  # null: the store has no workers (SQLite)
                body = None if snap.workers is None else [w.as_json() for w in snap.workers]
            else:
                body = snap.audit.as_json()
            return JSONResponse({
                "api": API_VERSION, "read_at": snap.read_at.isoformat(),
                "stale_since": stale_since.isoformat() if stale_since else None,
                "problem": snapshots.problem, "notes": snap.notes, part: body,
            })
        return answer

    async def metrics(request: Request) -> Response:
        return Response(exposition(collector),
                        media_type="text/plain; version=0.0.4; charset=utf-8")

    routes = [
        Route("/", page("overview.html.j2"), methods=list(READ_METHODS)),
        Route("/audit", page("audit.html.j2"), methods=list(READ_METHODS)),
        *(Route(f"/api/{API_VERSION}/{part}", api(part), methods=list(READ_METHODS))
          for part in ("services", "runs", "campaigns", "workers", "audit")),
        Route("/metrics", metrics, methods=list(READ_METHODS)),
        Mount("/static", StaticFiles(directory=str(HERE / "static")), name="static"),
    ]
    return Guard(Starlette(routes=routes), token, allowed_hosts)


def _starting(snapshots: Snapshots) -> Response:
    why = f": {snapshots.problem}" if snapshots.problem else ""
    return PlainTextResponse(f"503 no snapshot of the state store yet{why}\n",
                             status_code=503, headers={"retry-after": "2"})
