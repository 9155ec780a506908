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
writes the map file from what HAProxy holds (`show map`) and `show servers state` to disk
in the same step, under an flock of `MAP_FILE.lock` (so a reload or restart keeps the flip,
and two services flipping at once never lose each other's line), reads back both the map
in memory and the map file, then confirms with a real request through the frontend. Once
the map in memory changed, a failure to persist (after 3 tries), a read-back that differs
(a reload between `set map` and persisting: `moved` says whether memory still routes to
the new side) or a failed confirmation raises `FlipIncomplete`; the caller re-reads the
router and records where traffic is.
"""

from __future__ import annotations

import csv
import re
import time
from collections.abc import Sequence
from dataclasses import dataclass

from orchestrator.errors import FlipIncomplete, RouterError
from orchestrator.routers.base import (
    Check,
    DrainResult,
    Exposure,
    FlipResult,
    ServerHealth,
    SideHealth,
    TrafficCounters,
)
from orchestrator.routers.confirm import confirm_by_request
from orchestrator.routers.haproxy.settings import HAProxySettings
from orchestrator.routers.haproxy.transport import Transport, make_transport
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
PERSIST_ATTEMPTS = 3
PERSIST_BACKOFF_S = 0.2
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
        for name, path in (("map_file", settings.map_file),
                           ("percent_map_file", settings.percent_map()),
                           ("exposed_map_file", settings.exposed_map())):
            if not _PATH.match(path):
                raise RouterError(f"{name} {path!r} must be a path without spaces")
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
        """From the BACKEND row of `show stat`: hrsp_1xx..hrsp_5xx and hrsp_other, and
        `rtime` (the average response time, ms; empty: not counted)."""
        backend = self.backend(service, side)
        for record in self._stat_records():
            if record.get("pxname") == backend and record.get("svname") == "BACKEND":
                try:
                    counts = {k: int(record.get(k) or 0) for k in _RESPONSE_COLUMNS}
                except ValueError:
                    return None
                return TrafficCounters(sum(counts.values()), counts["hrsp_5xx"],
                                       _milliseconds(record.get("rtime")))
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

        # 4. Persist in the same step, or a reload undoes the flip: the map file is written
        #    from what HAProxy holds (every service's line), under the map's lock.
        self._persist(service, target)

        # 5. Read back memory and file: a reload between `set map` and persisting puts
        #    memory back on the old side (and the file maybe on the new one): no move.
        self._check_persisted(service, target)
        confirmed_by.append("persisted-readback")

        # 6. Confirm with a real request through the frontend.
        url = self.settings.frontends.get(service)
        if url:
            try:
                self._confirm_by_request(service, url, target)
            except RouterError as exc:
                raise FlipIncomplete(
                    exc.message, persisted=True, confirmed=False, hint=exc.hint
                ) from exc
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

    def expose(self, service: str, side: Side | None, percent: int) -> FlipResult:
        """`routers.base.Exposing`: see `haproxy.exposure`."""
        from orchestrator.routers.haproxy import exposure

        return exposure.apply(self, service, side, percent)

    def exposure(self, service: str) -> Exposure | None:
        """`routers.base.Exposing`: see `haproxy.exposure`."""
        from orchestrator.routers.haproxy import exposure

        return exposure.read(self, service)

    def readiness(self, services: Sequence[str]) -> list[Check]:
        """`routers.base.SelfChecking`: see `haproxy.readiness`."""
        from orchestrator.routers.haproxy.readiness import readiness

        return readiness(self, services)

    # -- persistence and confirmation -----------------------------------------------
    def _require_admin(self) -> None:
        level = self._run("show cli level").strip()
        if level != "admin":
            raise RouterError(
                f"haproxy socket {self.settings.socket}: permission denied: the socket is at "
                f"level {level or 'unknown'!r}, a flip needs level admin; nothing was changed",
                hint="declare it as `stats socket <path> mode 600 level admin` in haproxy.cfg",
            )

    def _persist(self, service: str, target: str) -> None:
        """Map file and server state from memory; retried, then FlipIncomplete: the map in
        memory already routes to `target`."""
        last: RouterError | None = None
        for attempt in range(PERSIST_ATTEMPTS):
            if attempt:
                time.sleep(PERSIST_BACKOFF_S * attempt)
            try:
                self.transport.persist_map(
                    self.settings.map_file, self.settings.server_state_file, f"{service} {target}"
                )
                return
            except RouterError as exc:
                last = exc
        assert last is not None
        raise FlipIncomplete(
            f"persisting {self.settings.map_file} failed {PERSIST_ATTEMPTS} times: "
            f"{last.message}",
            persisted=False,
            hint=last.hint or f"make {self.settings.map_file} and "
            f"{self.settings.server_state_file} writable (disk space, permissions)",
        )

    def _check_persisted(self, service: str, target: str) -> None:
        """Memory and the map file both route `service` to `target`, or FlipIncomplete
        naming what each holds."""
        map_file = self.settings.map_file
        try:
            memory = self._map_entry(service)
            on_disk = map_file_entry(self.transport.read_text(map_file) or "", service)
        except RouterError as exc:
            raise FlipIncomplete(f"reading back {map_file} after persisting failed: "
                                 f"{exc.message}", persisted=False) from exc
        if memory == target and on_disk == target:
            return
        raise FlipIncomplete(
            f"after persisting the flip to {target}, HAProxy routes {service} to "
            f"{memory or 'nothing'} in memory and the map file {map_file} routes it to "
            f"{on_disk or 'nothing'} (did the load balancer reload between `set map` and "
            "persisting?)",
            moved=memory == target, persisted=False,
            hint="find out what reloads the load balancer during flips",
        )

    def _confirm_by_request(self, service: str, url: str, target: str) -> None:
        confirm_by_request(service, url, self.settings.confirm_header, {target},
                           self.settings.timeout, CONFIRM_WINDOW_S)


def map_file_entry(text: str, service: str) -> str | None:
    """The backend a map file's text routes `service` to, None when it has no line for it;
    RouterError when lines for it disagree."""
    values = {
        parts[1]
        for parts in (line.split() for line in text.splitlines())
        if len(parts) >= 2 and parts[0] == service
    }
    if len(values) > 1:
        raise RouterError(f"{service}: the map file has conflicting entries {sorted(values)}")
    return values.pop() if values else None


def _check_name(what: str, value: str) -> None:
    # Names go into runtime API commands: no spaces, separators or newlines.
    if not _NAME.match(value):
        raise RouterError(f"invalid {what} name {value!r} (letters, digits, . _ - only)")


def _milliseconds(text: str | None) -> float | None:
    """A `show stat` time column (ms): None when empty or not a number."""
    try:
        return float(text) if text else None
    except ValueError:
        return None
