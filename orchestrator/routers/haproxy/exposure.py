"""Progressive exposure and preview in HAProxy without a reload (`routers.base.Exposing`).

Two more maps, read per request, in front of the live map's `use_backend` (service `web`,
the live map `/etc/haproxy/bluegreen.map`; the exposure maps default to its name with
`.percent` and `.exposed`, `router.percent_map_file` / `router.exposed_map_file`)::

    frontend web
        http-request set-var(txn.bg_pct) str(web),map_str_int(/etc/haproxy/bluegreen.percent.map,0)
        http-request set-var(txn.bg_exposed) str(web),map(/etc/haproxy/bluegreen.exposed.map)
        use_backend %[var(txn.bg_exposed)] if { var(txn.bg_exposed) -m found } { req.hdr(X-Bluegreen-Preview) -m str 1 }
        use_backend %[var(txn.bg_exposed)] if { var(txn.bg_exposed) -m found } { req.cook(bluegreen_preview) -m str 1 }
        use_backend %[var(txn.bg_exposed)] if { var(txn.bg_exposed) -m found } { rand(100),sub(txn.bg_pct) lt 0 }
        use_backend %[str(web),map(/etc/haproxy/bluegreen.map,web_blue)]

The percent map holds `web 25` (0..99), the exposed map `web web_green` (no line: no
exposure). `rand(100)` is 0..99, so `rand(100) - pct < 0` holds for pct of 100 new
requests; a preview (pct 0) sends only requests with `X-Bluegreen-Preview: 1` or the cookie
`bluegreen_preview=1` (a config written before the cookie line honours the header only).

A change sets the exposed map first and the percent second (every state in between is the
old share or a preview), clears in the other order (the exposed line goes first: at once no
request goes there), reads both back, and writes both files from what HAProxy holds
(`show map`) under an flock of `PERCENT_MAP.lock` (local transports), each atomically, so a
reload keeps the step. Once memory changed, a failure to persist raises FlipIncomplete
(persisted=False). A HAProxy without these maps loaded has no exposure (`exposure()` ->
None) and refuses `expose()` naming the lines to add.
"""

from __future__ import annotations

import time
from contextlib import AbstractContextManager, nullcontext
from typing import TYPE_CHECKING

from orchestrator.errors import FlipIncomplete, RouterError
from orchestrator.routers.base import PREVIEW_COOKIE, PREVIEW_HEADER, Exposure, FlipResult
from orchestrator.routers.haproxy.transport import MAP_LOCK_TIMEOUT_S, _file_lock, _LocalFiles
from orchestrator.sides import Side

if TYPE_CHECKING:
    from orchestrator.routers.haproxy.router import HAProxyRouter

PERSIST_ATTEMPTS = 3
PERSIST_BACKOFF_S = 0.2


def config_lines(service: str, live_backend: str, map_file: str, percent_map: str,
                 exposed_map: str) -> list[str]:
    """The frontend lines of the module docstring, in order (the live map's last)."""
    found = "{ var(txn.bg_exposed) -m found }"
    return [
        f"http-request set-var(txn.bg_pct) str({service}),map_str_int({percent_map},0)",
        f"http-request set-var(txn.bg_exposed) str({service}),map({exposed_map})",
        f"use_backend %[var(txn.bg_exposed)] if {found} "
        f"{{ req.hdr({PREVIEW_HEADER}) -m str 1 }}",
        f"use_backend %[var(txn.bg_exposed)] if {found} "
        f"{{ req.cook({PREVIEW_COOKIE}) -m str 1 }}",
        f"use_backend %[var(txn.bg_exposed)] if {found} {{ rand(100),sub(txn.bg_pct) lt 0 }}",
        f"use_backend %[str({service}),map({map_file},{live_backend})]",
    ]


def _entries(router: HAProxyRouter, map_file: str) -> dict[str, str] | None:
    """key -> value of the map in memory; None when HAProxy has no such map."""
    reply = router.transport.command(f"show map {map_file}")
    if reply.strip().startswith("Unknown map"):
        return None
    from orchestrator.routers.haproxy.router import parse_reply

    parse_reply(f"show map {map_file}", reply)
    entries: dict[str, str] = {}
    for line in reply.splitlines():
        parts = line.split()
        if len(parts) == 3:
            entries[parts[1]] = parts[2]
    return entries


def read(router: HAProxyRouter, service: str) -> Exposure | None:
    """The exposure HAProxy applies now (None: none, or the maps are not loaded)."""
    settings = router.settings
    exposed = _entries(router, settings.exposed_map())
    percents = _entries(router, settings.percent_map())
    if exposed is None or percents is None or service not in exposed:
        return None
    side = router._side_of(service, exposed[service])
    raw = percents.get(service, "0")
    if not raw.isdigit() or not 0 <= int(raw) <= 99:
        raise RouterError(f"{service}: the percent map {settings.percent_map()} holds {raw!r} "
                          "(0..99 expected)", hint="fix or remove that line")
    return Exposure(side, int(raw))


def _put(router: HAProxyRouter, map_file: str, entries: dict[str, str], key: str,
         value: str | None) -> None:
    if value is None:
        if key in entries:
            router._run(f"del map {map_file} {key}")
        return
    verb = "set" if key in entries else "add"
    router._run(f"{verb} map {map_file} {key} {value}")


def apply(router: HAProxyRouter, service: str, side: Side | None, percent: int) -> FlipResult:
    """`Exposing.expose` for HAProxy; see the module docstring."""
    started = time.monotonic()
    settings = router.settings
    percent_map, exposed_map = settings.percent_map(), settings.exposed_map()
    router._require_admin()
    exposed, percents = _entries(router, exposed_map), _entries(router, percent_map)
    if exposed is None or percents is None:
        missing = [m for m, e in ((percent_map, percents), (exposed_map, exposed)) if e is None]
        if side is None:  # nothing can be exposed without the maps
            live = router.live(service)
            return FlipResult(service, live, live, time.monotonic() - started, [], True)
        raise RouterError(
            f"{service}: HAProxy has no exposure map {' and no '.join(missing)}: progressive "
            "steps and preview need two more maps in the service's frontend",
            hint="add the lines `bluegreen init` writes (README: progressive exposure), "
            "create the map files, reload HAProxy; `bluegreen doctor` checks them")
    live = router.live(service)
    if side is not None:
        health = router.health(service, side)
        if not health.healthy:
            states = ", ".join(f"{s.name}={s.status}" for s in health.servers) or "none"
            raise RouterError(f"{service}: refusing to expose {side}: no server of "
                              f"{health.backend} is UP ({states}); traffic was not moved")
        _put(router, exposed_map, exposed, service, router.backend(service, side))
        _put(router, percent_map, percents, service, str(percent))
    else:
        _put(router, exposed_map, exposed, service, None)
        _put(router, percent_map, percents, service, None)
    wanted = Exposure(side, percent) if side is not None else None
    now = read(router, service)
    if now != wanted:
        raise FlipIncomplete(f"{service}: the exposure maps read back {now} after setting "
                             f"{wanted}", persisted=False)
    last: RouterError | None = None
    for attempt in range(PERSIST_ATTEMPTS):  # as a flip's persist: retried, then incomplete
        if attempt:
            time.sleep(PERSIST_BACKOFF_S * attempt)
        try:
            _persist(router)
            _check_files(router, service, wanted)
            last = None
            break
        except RouterError as exc:
            last = exc
    if last is not None:
        raise FlipIncomplete(f"{service}: the exposure is set in memory but not persisted "
                             f"({PERSIST_ATTEMPTS} tries): {last.message}", persisted=False,
                             hint=last.hint)
    return FlipResult(service, live, live, time.monotonic() - started,
                      ["map-readback", "persisted-readback"], persisted=True)


def _lock(router: HAProxyRouter) -> AbstractContextManager[None]:
    if isinstance(router.transport, _LocalFiles):
        return _file_lock(f"{router.settings.percent_map()}.lock", MAP_LOCK_TIMEOUT_S)
    return nullcontext()  # a remote load balancer: one writer per service (the traffic lock)


def _persist(router: HAProxyRouter) -> None:
    """Both map files from memory, each written atomically."""
    settings = router.settings
    with _lock(router):
        for map_file in (settings.exposed_map(), settings.percent_map()):
            entries = _entries(router, map_file)
            if entries is None:
                raise RouterError(f"HAProxy no longer has the map {map_file}")
            text = "".join(f"{key} {value}\n" for key, value in sorted(entries.items()))
            router.transport.write_atomic(map_file, text, 0o644)


def _check_files(router: HAProxyRouter, service: str, wanted: Exposure | None) -> None:
    settings = router.settings
    exposed = _file_entries(router, settings.exposed_map()).get(service)
    percent = _file_entries(router, settings.percent_map()).get(service, "0")
    want_backend = router.backend(service, wanted.side) if wanted else None
    if exposed != want_backend or (wanted is not None and percent != str(wanted.percent)):
        raise RouterError(f"the map files hold {exposed or 'no exposure'} at {percent} % after "
                          f"writing (a reload or another writer in between?)")


def _file_entries(router: HAProxyRouter, path: str) -> dict[str, str]:
    text = router.transport.read_text(path) or ""
    return {parts[0]: parts[1] for parts in (line.split() for line in text.splitlines())
            if len(parts) >= 2 and not parts[0].startswith("#")}
