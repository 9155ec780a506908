"""What an HAProxy setup needs before a first flip, checked through the runtime API and,
where HAProxy runs here or is reached over SSH, its files (`bluegreen doctor`, the
rollout's precheck):

- the stats socket answers at `level admin` (`show cli level`): at `operator` HAProxy 2.6
  refuses `set server` and a flip would be refused after the patch window was spent;
- the map of `map_file` is one HAProxy loaded (`show map` lists them): else `set map`
  says `Unknown map`;
- haproxy.cfg sets `server-state-file` (the path bluegreen writes) and
  `load-server-state-from-file` (read from the running process's `-f` files when they can
  be read, else unknown);
- the directories of the map file and the server-state file are writable (a flip writes
  a temporary file beside each and renames it);
- the exposure maps (progressive steps, preview; `haproxy.exposure`) are loaded: without
  them a service without steps works as before (the check is unknown, not failed), and
  `exposure_maps(..., required=True)` fails for a service whose bake has steps.

Every check is a `routers.base.Check`; none raises.
"""

from __future__ import annotations

import os
import re
import shlex
from collections.abc import Sequence
from pathlib import Path

from orchestrator.errors import RouterError
from orchestrator.routers.base import Check
from orchestrator.routers.haproxy.router import HAProxyRouter
from orchestrator.routers.haproxy.ssh_transport import SSHTransport
from orchestrator.routers.haproxy.transport import _LocalFiles

_MAP_LINE = re.compile(r"^-?\d+ \(([^)]*)\)")


def readiness(router: HAProxyRouter, services: Sequence[str]) -> list[Check]:
    """The checks of the module docstring (`services`: only to name them in details)."""
    level = socket_level(router)
    if level.ok is False and level.name == "router socket":
        return [level]  # nothing else can be asked
    return [level, map_loaded(router), state_file(router), files_writable(router),
            exposure_maps(router, services, required=False)]


def _socket_path(router: HAProxyRouter) -> str:
    return router.settings.socket.removeprefix("unix://")


def socket_level(router: HAProxyRouter) -> Check:
    settings = router.settings
    try:
        level = router.transport.command("show cli level").strip()
    except RouterError as exc:
        return Check("router socket", False, f"{settings.socket}: {exc.message}",
                     exc.hint or "check router.socket in bluegreen.yml against the `stats "
                     "socket` line of haproxy.cfg, and that HAProxy runs")
    if level == "admin":
        return Check("router socket level", True, f"{settings.socket} is at level admin")
    return Check(
        "router socket level", False,
        f"{settings.socket} is at level {level or 'unknown'!r}: a flip needs level admin "
        "(set map, drain, server state); at this level the flip is refused after the patch",
        f"write `level admin` on the `stats socket` line of haproxy.cfg (`stats socket "
        f"{_socket_path(router)} mode 600 level admin`), then reload HAProxy")


def loaded_maps(router: HAProxyRouter) -> list[str]:
    """The files of the maps HAProxy loaded (`show map` without a map)."""
    reply = router.transport.command("show map")
    return [m.group(1) for line in reply.splitlines() if (m := _MAP_LINE.match(line.strip()))]


def map_loaded(router: HAProxyRouter) -> Check:
    map_file = router.settings.map_file
    try:
        maps = loaded_maps(router)
    except RouterError as exc:
        return Check("router map", False, f"`show map` failed: {exc.message}",
                     exc.hint or "check the socket (see `router socket`)")
    if map_file in maps:
        return Check("router map", True, f"HAProxy has the map {map_file}")
    has = ", ".join(maps) if maps else "no map at all"
    return Check(
        "router map", False,
        f"HAProxy has no map {map_file} (router.map_file); it has: {has}",
        f"set router.map_file to the path inside `map(...)` of haproxy.cfg's use_backend"
        f"{f' ({maps[0]})' if len(maps) == 1 else ''}, or route with `use_backend "
        f"%[str(SERVICE),map({map_file},SERVICE_blue)]`; the map file must exist before the "
        "reload")


def _config_files(router: HAProxyRouter) -> list[str] | None:
    """The `-f` files of the running HAProxy (its `show info` Pid, /proc/PID/cmdline read
    where HAProxy's files are), or None when that cannot be read."""
    info = router.transport.command("show info")
    pid = next((line.split(":", 1)[1].strip() for line in info.splitlines()
                if line.startswith("Pid:")), "")
    if not pid.isdigit():
        return None
    cmdline = router.transport.read_text(f"/proc/{pid}/cmdline")
    if not cmdline:
        return None
    argv = cmdline.split("\0")
    if "haproxy" not in Path(argv[0]).name:  # another PID namespace: not our process
        return None
    return [argv[i + 1] for i, arg in enumerate(argv[:-1]) if arg == "-f"]


def _directives(text: str) -> dict[str, str]:
    found: dict[str, str] = {}
    for raw in text.splitlines():
        words = raw.split("#", 1)[0].split()
        if words and words[0] in ("server-state-file", "load-server-state-from-file",
                                  "server-state-base"):
            found.setdefault(words[0], " ".join(words[1:]))
    return found


def state_file(router: HAProxyRouter) -> Check:
    wanted = router.settings.server_state_file
    name = "router server state"
    fix = (f"in haproxy.cfg: `server-state-file {wanted}` under `global` and "
           "`load-server-state-from-file global` under `defaults`, then reload HAProxy")
    try:
        files = _config_files(router)
        texts = [router.transport.read_text(f) for f in files] if files else []
    except RouterError as exc:
        return Check(name, None, f"haproxy.cfg could not be read: {exc.message}", "check by "
                     "hand: " + fix)
    if not files or any(t is None for t in texts):
        return Check(name, None, "haproxy.cfg could not be read (the running process's -f "
                     "files are not on a host bluegreen reads)", "check by hand: " + fix)
    found: dict[str, str] = {}
    for text in texts:
        for key, value in _directives(text or "").items():
            found.setdefault(key, value)
    where = ", ".join(files)
    if "server-state-file" not in found or "load-server-state-from-file" not in found:
        missing = [k for k in ("server-state-file", "load-server-state-from-file")
                   if k not in found]
        return Check(name, False, f"{where} has no {' and no '.join(missing)}: a reload "
                     "forgets the servers' states (a drained side comes back)", fix)
    path = found["server-state-file"]
    if not path.startswith("/"):
        path = os.path.join(found.get("server-state-base", ""), path)
    if path != wanted:
        return Check(name, False, f"{where}: server-state-file is {path}, but bluegreen "
                     f"writes {wanted} (router.server_state_file)",
                     f"set router.server_state_file to {path}")
    return Check(name, True, f"{where} loads {wanted} (load-server-state-from-file "
                 f"{found['load-server-state-from-file']})")


def _unwritable_here(paths: list[str]) -> list[str]:
    problems = []
    for path in paths:
        parent = Path(path).parent
        if not parent.is_dir():
            problems.append(f"{path}: no directory {parent}")
        elif not os.access(parent, os.W_OK | os.X_OK):
            problems.append(f"{path}: directory {parent} is not writable by this user")
    return problems


def _unwritable_remote(transport: SSHTransport, paths: list[str]) -> list[str]:
    quoted = " ".join(shlex.quote(p) for p in paths)
    script = (f'for f in {quoted}; do d=$(dirname -- "$f"); if [ ! -d "$d" ]; then '
              'echo "$f: no directory $d"; elif [ ! -w "$d" ] || [ ! -x "$d" ]; then '
              'echo "$f: directory $d is not writable by $(id -un)"; fi; done')
    status, out, err = transport._exec(f"sh -c {shlex.quote(script)}", b"")
    if status != 0:
        raise RouterError(f"{transport.description}: cannot check {', '.join(paths)}: "
                          f"{err.decode(errors='replace').strip() or f'exit {status}'}")
    return out.decode(errors="replace").splitlines()


def files_writable(router: HAProxyRouter) -> Check:
    settings = router.settings
    paths = [settings.map_file, settings.server_state_file]
    name = "router files writable"
    transport = router.transport
    try:
        if isinstance(transport, SSHTransport):
            problems = _unwritable_remote(transport, paths)
        elif isinstance(transport, _LocalFiles):
            problems = _unwritable_here(paths)
        else:
            return Check(name, None, f"{' and '.join(paths)}: not checked for this transport",
                         "make sure a flip can write both")
    except RouterError as exc:
        return Check(name, None, exc.message, "make sure a flip can write " + " and ".join(paths))
    if problems:
        return Check(name, False, "; ".join(problems), "run bluegreen as a user that may "
                     "write those directories, or move the files (router.map_file, "
                     "router.server_state_file and haproxy.cfg together)")
    return Check(name, True, f"{' and '.join(paths)} can be written")


def exposure_maps(router: HAProxyRouter, services: Sequence[str], *,
                  required: bool) -> Check:
    """Are the percent and exposed-backend maps loaded? `required`: some service's bake
    has progressive steps (then missing maps fail; otherwise they are unknown)."""
    from orchestrator.routers.haproxy.exposure import config_lines

    settings = router.settings
    wanted = [settings.percent_map(), settings.exposed_map()]
    name = "router exposure maps"
    try:
        maps = loaded_maps(router)
    except RouterError as exc:
        return Check(name, None, f"`show map` failed: {exc.message}",
                     exc.hint or "check the socket (see `router socket`)")
    missing = [m for m in wanted if m not in maps]
    if not missing:
        return Check(name, True, f"HAProxy has the exposure maps {' and '.join(wanted)} "
                     "(progressive steps and preview)")
    service = services[0] if services else "SERVICE"
    lines = "; ".join(config_lines(service, f"{service}_blue", settings.map_file, *wanted))
    return Check(
        name, False if required else None,
        f"HAProxy has no map {' and no '.join(missing)}: progressive steps and preview "
        f"{'are configured but ' if required else ''}cannot work (flips work as before)",
        f"create the map files (empty) and put these lines in the frontend of {service} "
        f"(before its use_backend), then reload HAProxy: {lines}")
