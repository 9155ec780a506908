"""`bluegreen init`: read an existing haproxy.cfg and write the lines bluegreen needs into a
copy of it. Text in, text out (no I/O, no HAProxy needed): the caller writes the files.

What is read: the `stats socket` (path and level), `server-state-file`, every frontend's
`bind` and `default_backend` / `use_backend`, every backend's name. What the adapted copy
gains (each line marked `# bluegreen` so a diff shows it):

- global: `stats socket ... level admin` (an existing socket's level is raised to admin:
  `set map` needs it) and `server-state-file` when missing;
- each backend of a service: `load-server-state-from-file global` (unless a defaults
  section already says it), so a reload keeps the servers' states;
- the frontend of each service: `use_backend %[str(SERVICE),map(MAP,SERVICE_LIVE)]` (the
  map's default is today's live backend, so nothing changes until a flip), before it the
  lines of progressive exposure and preview (`haproxy.exposure`: two more maps, empty: no
  exposure until a bake step sets one), and the confirm
  header `http-response set-header X-Bluegreen-Backend %b` (required: a flip is confirmed
  by a request through the frontend).

The initial map has one line per service naming the backend that routes today
(`default_backend`), so the first flip moves from what users see now.
"""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass, field

from orchestrator.routers.haproxy.exposure import config_lines
from orchestrator.routers.haproxy.settings import beside_map

SECTIONS = frozenset({"global", "defaults", "frontend", "backend", "listen", "resolvers",
                      "peers", "userlist", "mailers", "program", "http-errors", "ring",
                      "cache"})
MARK = "  # bluegreen"
DEFAULT_SOCKET = "/run/haproxy/admin.sock"
DEFAULT_STATE_FILE = "/var/lib/haproxy/server-state"
CONFIRM_HEADER = "X-Bluegreen-Backend"


@dataclass
class Section:
    kind: str
    name: str
    start: int
    """Index of its header line."""
    lines: list[int] = field(default_factory=list)
    """Indexes of its body lines."""


@dataclass(frozen=True)
class ServiceRoute:
    service: str
    frontend: str
    live_backend: str
    url: str | None
    """http(s)://ADDRESS:PORT from the frontend's first `bind` (None: not found)."""


@dataclass(frozen=True)
class Adapted:
    """The adapted config and what init needs to write bluegreen.yml and the map."""

    text: str
    diff: str
    socket: str
    map_file: str
    server_state_file: str
    routes: dict[str, ServiceRoute]
    map_lines: list[str]
    notes: list[str]
    exposure_maps: tuple[str, str] = ("", "")
    """The percent map and the exposed-backend map the frontends read (created empty)."""


def _split(text: str) -> tuple[list[str], list[Section]]:
    lines = text.splitlines()
    sections: list[Section] = []
    for index, line in enumerate(lines):
        words = line.split("#", 1)[0].split()
        if not words:
            if sections:
                sections[-1].lines.append(index)
            continue
        if not line[:1].isspace() and words[0] in SECTIONS:
            sections.append(Section(words[0], words[1] if len(words) > 1 else "", index))
        elif sections:
            sections[-1].lines.append(index)
    return lines, sections


def _words(lines: list[str], index: int) -> list[str]:
    return lines[index].split("#", 1)[0].split()


def _find(lines: list[str], section: Section, keyword: str) -> list[int]:
    n = len(keyword.split())
    return [i for i in section.lines
            if " ".join(_words(lines, i)[:n]) == keyword]


def _indent(lines: list[str], section: Section) -> str:
    for i in section.lines:
        if lines[i].strip():
            return lines[i][: len(lines[i]) - len(lines[i].lstrip())]
    return "    "


def _url_of(lines: list[str], section: Section) -> str | None:
    for i in _find(lines, section, "bind"):
        words = _words(lines, i)
        if len(words) < 2:
            continue
        address = words[1].split(",")[0]
        host, _, port = address.rpartition(":")
        if not port.isdigit():
            continue
        host = host.strip("[]")
        if host in ("", "*", "0.0.0.0", "::"):
            host = "127.0.0.1"
        scheme = "https" if "ssl" in words[2:] else "http"
        return f"{scheme}://{host}:{port}"
    return None


def adapt_config(
    text: str,
    services: dict[str, tuple[str, str]],
    *,
    map_file: str,
    source_name: str = "haproxy.cfg",
) -> Adapted:
    """Adapt `text` for `services` (service -> (blue backend, green backend)). ValueError
    naming the service and the fix when a service's backends or frontend are not there."""
    lines, sections = _split(text)
    exposure = (beside_map(map_file, "percent"), beside_map(map_file, "exposed"))
    by_kind: dict[str, list[Section]] = {}
    for section in sections:
        by_kind.setdefault(section.kind, []).append(section)
    backends = {s.name: s for s in by_kind.get("backend", []) + by_kind.get("listen", [])}
    frontends = by_kind.get("frontend", []) + by_kind.get("listen", [])
    inserts: dict[int, list[str]] = {}
    """line index -> lines to put after it."""
    replaced: dict[int, str] = {}
    notes: list[str] = []

    def add_after(index: int, section: Section, line: str) -> None:
        inserts.setdefault(index, []).append(f"{_indent(lines, section)}{line}{MARK}")

    def last_line(section: Section) -> int:
        body = [i for i in section.lines if lines[i].strip()]
        return body[-1] if body else section.start

    # -- global: the admin socket and the server-state file ---------------------------------
    if not by_kind.get("global"):
        raise ValueError(f"{source_name}: no `global` section: is this an HAProxy config?")
    glob = by_kind["global"][0]
    socket_path, state_file = DEFAULT_SOCKET, DEFAULT_STATE_FILE
    sockets = _find(lines, glob, "stats socket")
    unix = [i for i in sockets if not _words(lines, i)[2].startswith(("ipv4@", "ipv6@"))
            and ":" not in _words(lines, i)[2]] if sockets else []
    if unix:
        index = unix[0]
        words = _words(lines, index)
        socket_path = words[2]
        if "level" in words and words[words.index("level") + 1:words.index("level") + 2] != [
                "admin"]:
            at = words.index("level")
            old_level = words[at + 1] if at + 1 < len(words) else ""
            new_words = words[:at] + ["level", "admin"] + words[at + 2:]
            replaced[index] = f"{_indent(lines, glob)}{' '.join(new_words)}{MARK}"
            notes.append(f"the stats socket {socket_path} was `level {old_level}`: raised to "
                         "`level admin` (`set map` needs it)")
        elif "level" not in words:
            replaced[index] = f"{_indent(lines, glob)}{' '.join(words)} level admin{MARK}"
            notes.append(f"the stats socket {socket_path} had no level (default: operator): "
                         "`level admin` added")
    else:
        add_after(last_line(glob), glob,
                  f"stats socket {socket_path} mode 600 level admin")
    state_lines = _find(lines, glob, "server-state-file")
    if state_lines:
        state_file = _words(lines, state_lines[0])[1]
    else:
        add_after(last_line(glob), glob, f"server-state-file {state_file}")
    defaults_load = any(_find(lines, d, "load-server-state-from-file")
                        for d in by_kind.get("defaults", []))

    # -- each service: its backends, its frontend ------------------------------------------
    routes: dict[str, ServiceRoute] = {}
    for service, (blue, green) in services.items():
        missing = [b for b in (blue, green) if b not in backends]
        if missing:
            raise ValueError(
                f"{source_name}: service {service!r} needs the backends {blue} and {green}; "
                f"missing: {', '.join(missing)} (backends: {', '.join(sorted(backends))})")
        if not defaults_load:
            for name in (blue, green):
                section = backends[name]
                if not _find(lines, section, "load-server-state-from-file"):
                    add_after(section.start, section, "load-server-state-from-file global")
        route = _route(lines, frontends, service, blue, green)
        if route is None:
            raise ValueError(
                f"{source_name}: no frontend routes to {blue} or {green} (`default_backend` or "
                f"`use_backend`): bluegreen flips the frontend that serves {service!r}")
        frontend, live_backend, at = route
        routing = config_lines(service, live_backend, map_file, *exposure)
        uses = [i for i in _find(lines, frontend, "use_backend") if map_file in lines[i]]
        where = (uses[0] if uses else at) - 1
        where = where if where >= frontend.start else frontend.start
        if not any(exposure[0] in lines[i] for i in frontend.lines):
            for line in routing[:-1]:  # progressive exposure and preview, before the map
                add_after(where, frontend, line)
        if not uses:
            add_after(where, frontend, routing[-1])
        if not any(CONFIRM_HEADER.lower() in lines[i].lower() for i in frontend.lines):
            add_after(last_line(frontend), frontend,
                      f"http-response set-header {CONFIRM_HEADER} %b")
        url = _url_of(lines, frontend)
        if url is None:
            notes.append(f"frontend {frontend.name}: no `bind ADDRESS:PORT` found; set "
                         f"router.frontends.{service} in bluegreen.yml by hand")
        routes[service] = ServiceRoute(service, frontend.name, live_backend, url)

    out: list[str] = []
    for index, line in enumerate(lines):
        out.append(replaced.get(index, line))
        out.extend(inserts.get(index, []))
    adapted = "\n".join(out) + "\n"
    diff = "".join(difflib.unified_diff(
        [line + "\n" for line in lines], [line + "\n" for line in out],
        fromfile=source_name, tofile=f"{source_name}.bluegreen"))
    return Adapted(
        text=adapted, diff=diff, socket=socket_path, map_file=map_file,
        server_state_file=state_file, routes=routes,
        map_lines=[f"{r.service} {r.live_backend}" for r in routes.values()], notes=notes,
        exposure_maps=exposure,
    )


def _route(
    lines: list[str], frontends: list[Section], service: str, blue: str, green: str
) -> tuple[Section, str, int] | None:
    """(frontend, the backend it routes to today, index of the line to insert before)."""
    for frontend in frontends:
        for i in frontend.lines:
            words = _words(lines, i)
            if words[:1] == ["default_backend"] and len(words) > 1 and words[1] in (blue, green):
                return frontend, words[1], i
            if words[:1] == ["use_backend"] and len(words) > 1:
                match = re.search(rf"\b({re.escape(blue)}|{re.escape(green)})\b", words[1])
                if match:
                    return frontend, match.group(1), i
    return None
