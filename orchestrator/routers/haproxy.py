"""HAProxy driver: map-based blue/green routing through the runtime API.

What the HAProxy configuration must contain (service `web`, backends `web_blue`/`web_green`)::

    global
        stats socket /run/haproxy/admin.sock mode 600 level admin
        server-state-file /var/lib/haproxy/server-state
    defaults
        load-server-state-from-file global
    frontend web
        use_backend %[str(web),map(/etc/haproxy/bluegreen.map,web_blue)]
        http-response set-header X-Bluegreen-Backend %b

and the map file `/etc/haproxy/bluegreen.map` holds one line per service: `web web_blue`.

A flip changes the map in memory (`set map`, or `add map` for a new key), reads it back,
writes the map file and `show servers state` to disk in the same step (so a reload or
restart keeps the flip), then confirms with a real request through the frontend.
"""

from __future__ import annotations

import csv
import re
import socket
import time
from dataclasses import dataclass
from urllib.parse import urlsplit

from orchestrator.errors import RouterError
from orchestrator.routers.base import (
    DrainResult,
    FlipResult,
    ServerHealth,
    SideHealth,
    TrafficCounters,
)
from orchestrator.routers.settings import HAProxySettings
from orchestrator.routers.transport import Transport, make_transport
from orchestrator.sides import SIDES, Side

_NAME = re.compile(r"^[A-Za-z0-9._-]+$")
_PATH = re.compile(r"^[^\s;#]+$")

# Replies HAProxy gives instead of doing what was asked (2.6 wording). Matched at the
# start of the reply; socat exits 0 either way.
_ERROR_PREFIXES = (
    "No such",
    "Can't",
    "Cannot",
    "Unknown",
    "Permission denied",
    "entry not found",
    "Missing",
    "Require",
    "Invalid",
    "Unexpected",
    "Out of memory",
    "Failed",
    "Error",
    "'",  # "'set map' expects three parameters..." and similar usage errors
)

_RESPONSE_COLUMNS = ("hrsp_1xx", "hrsp_2xx", "hrsp_3xx", "hrsp_4xx", "hrsp_5xx", "hrsp_other")

CONFIRM_WINDOW_S = 2.0
DRAIN_POLL_S = 0.2


@dataclass(frozen=True)
class _StatRow:
    backend: str
    server: str
    status: str
    check_status: str
    sessions: int


def parse_reply(command: str, reply: str) -> str:
    """Return the reply, or raise RouterError when HAProxy says the command failed."""
    text = reply.strip()
    first = text.splitlines()[0].strip() if text else ""
    if first.startswith(_ERROR_PREFIXES):
        hint = None
        if "Permission denied" in text:
            hint = "the stats socket needs `level admin` (stats socket ... mode 600 level admin)"
        elif "Unknown map" in text:
            hint = "`map_file` must be the exact path used in `map(...)` in haproxy.cfg"
        raise RouterError(f"haproxy refused {command!r}: {text}", hint=hint)
    return reply


class HAProxyRouter:
    """`Router` for HAProxy 2.x. One instance per thread (transports are not shared-safe)."""

    def __init__(self, settings: HAProxySettings, transport: Transport | None = None) -> None:
        if not _PATH.match(settings.map_file):
            raise RouterError(f"map_file {settings.map_file!r} must be a path without spaces")
        self.settings = settings
        self.transport = transport if transport is not None else make_transport(settings)

    # -- helpers --------------------------------------------------------------------
    def _run(self, command: str) -> str:
        return parse_reply(command, self.transport.command(command))

    def backend(self, service: str, side: Side) -> str:
        _check_name("service", service)
        name = self.settings.backend_template.format(service=service, side=side)
        _check_name("backend", name)
        return name

    def _side_of(self, service: str, backend: str) -> Side:
        for side in SIDES:
            if self.backend(service, side) == backend:
                return side
        raise RouterError(
            f"{service}: map {self.settings.map_file} routes to {backend!r}, which is neither "
            f"{self.backend(service, 'blue')!r} nor {self.backend(service, 'green')!r}",
            hint="fix the map entry or `backend_template` in bluegreen.yml",
        )

    def _map_entry(self, service: str) -> str | None:
        """The backend the in-memory map holds for `service`, None if there is no entry."""
        _check_name("service", service)
        reply = self._run(f"show map {self.settings.map_file}")
        values: list[str] = []
        for line in reply.splitlines():
            parts = line.split()
            # `show map` lines: "<ref> <key> <value>"
            if len(parts) == 3 and parts[1] == service:
                values.append(parts[2])
        if len(set(values)) > 1:
            raise RouterError(
                f"{service}: map {self.settings.map_file} has conflicting entries {values}"
            )
        return values[0] if values else None

    def _stat_records(self) -> list[dict[str, str]]:
        reply = self._run("show stat")
        lines = reply.splitlines()
        if not lines or not lines[0].startswith("# "):
            raise RouterError(f"haproxy: unexpected `show stat` reply: {reply[:200]!r}")
        return list(csv.DictReader([lines[0][2:], *lines[1:]]))

    def _stats(self) -> list[_StatRow]:
        rows: list[_StatRow] = []
        for record in self._stat_records():
            server = record.get("svname") or ""
            if not record.get("pxname") or server in ("FRONTEND", "BACKEND"):
                continue
            try:
                sessions = int(record.get("scur") or 0)
            except ValueError:
                sessions = 0
            rows.append(
                _StatRow(
                    backend=record["pxname"],
                    server=server,
                    status=(record.get("status") or "").strip(),
                    check_status=(record.get("check_status") or "").strip(),
                    sessions=sessions,
                )
            )
        return rows

    def _backend_rows(self, backend: str) -> list[_StatRow]:
        stats = self._stats()
        if not any(row.backend == backend for row in stats):
            known = sorted({row.backend for row in stats})
            raise RouterError(
                f"haproxy has no backend {backend!r} with servers (known: {', '.join(known)})",
                hint="check `backend_template` in bluegreen.yml against haproxy.cfg",
            )
        return [row for row in stats if row.backend == backend]

    # -- Router ---------------------------------------------------------------------
    def counters(self, service: str, side: Side) -> TrafficCounters | None:
        """From the BACKEND row of `show stat`: hrsp_1xx..hrsp_5xx and hrsp_other."""
        backend = self.backend(service, side)
        for record in self._stat_records():
            if record.get("pxname") == backend and record.get("svname") == "BACKEND":
                try:
                    counts = {k: int(record.get(k) or 0) for k in _RESPONSE_COLUMNS}
                except ValueError:
                    return None
                return TrafficCounters(sum(counts.values()), counts["hrsp_5xx"])
        return None

    def live(self, service: str) -> Side:
        backend = self._map_entry(service)
        if backend is None:
            raise RouterError(
                f"{service}: no entry in map {self.settings.map_file}; cannot tell the live side",
                hint=f"add the line `{service} {self.backend(service, 'blue')}` to the map file",
            )
        return self._side_of(service, backend)

    def health(self, service: str, side: Side) -> SideHealth:
        backend = self.backend(service, side)
        servers = [
            ServerHealth(
                name=row.server,
                status=row.status,
                check_status=row.check_status,
                sessions=row.sessions,
            )
            for row in self._backend_rows(backend)
        ]
        return SideHealth(service=service, side=side, backend=backend, servers=servers)

    def flip(self, service: str, to_side: Side) -> FlipResult:
        started = time.monotonic()
        target = self.backend(service, to_side)
        map_file = self.settings.map_file

        # 0. HAProxy 2.6 accepts `set map` on a `level user` socket, but we need admin
        #    (drain and server state); refuse before changing anything.
        self._require_admin()

        # 1. Never send traffic to a dead side.
        side_health = self.health(service, to_side)
        if not side_health.healthy:
            states = ", ".join(f"{s.name}={s.status}" for s in side_health.servers) or "none"
            raise RouterError(
                f"{service}: refusing to flip to {to_side}: no server of {target} is UP "
                f"({states}); traffic was not moved"
            )

        # 2. Change the map in memory.
        current = self._map_entry(service)
        from_side = self._side_of(service, current) if current is not None else None
        if current is None:
            self._run(f"add map {map_file} {service} {target}")
        else:
            self._run(f"set map {map_file} {service} {target}")

        # 3. Read back.
        readback = self._map_entry(service)
        if readback != target:
            raise RouterError(
                f"{service}: map {map_file} reads back {readback!r} after setting {target!r}"
            )
        confirmed_by = ["map-readback"]

        # 4. Persist in the same step, or a reload undoes the flip.
        try:
            self._persist_map(service, target)
            self._persist_server_state()
        except RouterError as exc:
            raise RouterError(
                f"{service}: traffic now goes to {target} (in memory) but persisting failed: "
                f"{exc.message}; a reload of HAProxy would revert it",
                hint=exc.hint,
            ) from exc

        # 5. Confirm with a real request through the frontend.
        url = self.settings.frontends.get(service)
        if url:
            self._confirm_by_request(service, url, target)
            confirmed_by.append("request")

        return FlipResult(
            service=service,
            from_side=from_side,
            to_side=to_side,
            seconds=time.monotonic() - started,
            confirmed_by=confirmed_by,
            persisted=True,
        )

    def drain(self, service: str, side: Side, deadline_s: float) -> DrainResult:
        started = time.monotonic()
        backend = self.backend(service, side)
        deadline = started + max(0.0, deadline_s)
        while True:
            left = sum(row.sessions for row in self._backend_rows(backend))
            now = time.monotonic()
            if left == 0 or now >= deadline:
                return DrainResult(
                    service=service, side=side, sessions_left=left, seconds=now - started
                )
            time.sleep(min(DRAIN_POLL_S, max(0.0, deadline - now)))

    def close(self) -> None:
        self.transport.close()

    # -- persistence and confirmation -----------------------------------------------
    def _require_admin(self) -> None:
        level = self._run("show cli level").strip()
        if level != "admin":
            raise RouterError(
                f"haproxy socket {self.settings.socket}: permission denied: the socket is at "
                f"level {level or 'unknown'!r}, a flip needs level admin; nothing was changed",
                hint="declare it as `stats socket <path> mode 600 level admin` in haproxy.cfg",
            )

    def _persist_map(self, service: str, target: str) -> None:
        """Rewrite the map file with `service target`, keeping every other line."""
        path = self.settings.map_file
        old = self.transport.read_text(path) or ""
        lines: list[str] = []
        replaced = False
        for line in old.splitlines():
            parts = line.split()
            if parts and not parts[0].startswith("#") and parts[0] == service:
                if not replaced:
                    lines.append(f"{service} {target}")
                    replaced = True
                continue  # drop duplicates of the key
            lines.append(line)
        if not replaced:
            lines.append(f"{service} {target}")
        self.transport.write_atomic(path, "\n".join(lines) + "\n", 0o644)

    def _persist_server_state(self) -> None:
        reply = self._run("show servers state")
        if not reply.strip():
            raise RouterError("haproxy: empty `show servers state` reply")
        self.transport.write_atomic(self.settings.server_state_file, reply, 0o644)

    def _confirm_by_request(self, service: str, url: str, target: str) -> None:
        header = self.settings.confirm_header
        deadline = time.monotonic() + CONFIRM_WINDOW_S
        while True:
            try:
                status, got = backend_header(url, header, self.settings.timeout)
            except (OSError, ValueError) as exc:
                seen = f"request failed: {exc}"
            else:
                # A 4xx from the new side still tells us where the request went.
                if got == target and status < 500:
                    return
                seen = f"HTTP {status}, {header}: {got}"
            if time.monotonic() >= deadline:
                raise RouterError(
                    f"{service}: the map already routes to {target} (and is persisted), but a "
                    f"request to {url} did not confirm it within {CONFIRM_WINDOW_S:.0f} s "
                    f"(last: {seen})",
                    hint=f"check that the frontend sets `http-response set-header {header} %b`",
                )
            time.sleep(0.1)


def backend_header(url: str, header: str, timeout: float) -> tuple[int, str | None]:
    """GET `url` once: (HTTP status, value of `header` or None).

    Plain http:// is spoken over a socket here (http.client and urllib pull in ssl and
    email: a third of rollback's start-up); https:// goes through urllib.
    """
    parts = urlsplit(url)
    if parts.scheme == "https":
        return _backend_header_urllib(url, header, timeout)
    if parts.scheme != "http" or not parts.hostname:
        raise ValueError(f"unsupported frontend URL {url!r} (use http:// or https://)")
    path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    host = parts.hostname
    request = (f"GET {path} HTTP/1.1\r\nHost: {parts.netloc}\r\nConnection: close\r\n"
               "User-Agent: bluegreen\r\n\r\n")
    with socket.create_connection((host, parts.port or 80), timeout=timeout) as conn:
        conn.sendall(request.encode("ascii"))
        head = b""
        while b"\r\n\r\n" not in head and len(head) < 65536:
            chunk = conn.recv(4096)
            if not chunk:
                break
            head += chunk
    lines = head.split(b"\r\n\r\n", 1)[0].decode("latin-1").split("\r\n")
    status_line = lines[0].split(" ", 2)
    if len(status_line) < 2 or not status_line[0].startswith("HTTP/") or \
            not status_line[1].isdigit():
        raise ValueError(f"not an HTTP reply: {lines[0][:80]!r}")
    wanted = header.lower()
    for line in lines[1:]:
        name, sep, value = line.partition(":")
        if sep and name.strip().lower() == wanted:
            return int(status_line[1]), value.strip()
    return int(status_line[1]), None


def _backend_header_urllib(url: str, header: str, timeout: float) -> tuple[int, str | None]:
    import urllib.error
    import urllib.request

    request = urllib.request.Request(url, headers={"Connection": "close"})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310
            return int(response.status), response.headers.get(header)
    except urllib.error.HTTPError as exc:
        got = exc.headers.get(header) if exc.headers is not None else None
        return exc.code, got


def _check_name(what: str, value: str) -> None:
    # Names go into runtime API commands: no spaces, separators or newlines.
    if not _NAME.match(value):
        raise RouterError(f"invalid {what} name {value!r} (letters, digits, . _ - only)")
