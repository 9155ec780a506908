"""The nginx driver (`router: {kind: nginx}`), for nginx running on this machine.

- `live`: a request through the service's frontend: the confirm header
  (`add_header X-Bluegreen-Backend $proxy_host always;`) names the upstream group that the
  RUNNING nginx routes to (what is in memory, not what a file says).
- `flip`: under an flock, the live file gets the service's new upstream (written from what
  it holds, temporary file + rename), `nginx -t` checks the whole config, `nginx -s reload`
  starts new workers with it (the old ones finish their requests); any failure before the
  reload puts the old file back (nothing moved: RouterError). Then a request through the
  frontend must show the new upstream (else FlipIncomplete: moved and persisted, not
  confirmed). A flip is persisted by construction: the file IS nginx's config.
- `drain`: waits for the old workers (`nginx: worker process is shutting down`) to end.
- `health`: the side's upstream servers from `nginx -T` (the config nginx would load),
  each tried with a TCP connect (`down` servers count as MAINT).
- `counters`: responses and 5xx per upstream from `access_log`
  (`log_format bluegreen '$proxy_host $status $upstream_response_time';`).
"""

from __future__ import annotations

import os
import re
import socket
import subprocess
import time
from collections.abc import Sequence
from pathlib import Path

from orchestrator.errors import FlipIncomplete, RouterError
from orchestrator.routers.base import (
    Check,
    DrainResult,
    FlipResult,
    ServerHealth,
    SideHealth,
    TrafficCounters,
)
from orchestrator.routers.confirm import backend_header, confirm_by_request
from orchestrator.routers.nginx import livefile
from orchestrator.routers.nginx.settings import NginxSettings
from orchestrator.sides import SIDES, Side

ENV = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LANG": "C.UTF-8"}
"""nginx's commands get this environment and nothing of bluegreen's."""
MAX_LOG_BYTES = 64 * 1024 * 1024
"""Counters read at most this much of the end of the access log."""
SHUTTING_DOWN = b"nginx: worker process is shutting down"
_UPSTREAM = re.compile(r"upstream\s+([A-Za-z0-9_.-]+)\s*\{(.*?)\}", re.S)
_SERVER = re.compile(r"^\s*server\s+([^\s;]+)([^;]*);", re.M)
_PID = re.compile(r"^\s*pid\s+([^;]+);", re.M)
DEFAULT_PID_FILE = "/run/nginx.pid"
"""Debian's nginx when the config names none."""


class NginxRouter:
    def __init__(self, settings: NginxSettings) -> None:
        self.settings = settings
        self._upstreams: dict[str, list[tuple[str, bool]]] | None = None
        self._pid_file = DEFAULT_PID_FILE

    # -- the contract --------------------------------------------------------------------

    def live(self, service: str) -> Side:
        s = self.settings
        url = s.frontends.get(service)
        if url is None:
            upstream = livefile.read(s.live_file).get(self._key(service))
            where = s.live_file
        else:
            try:
                _status, upstream = backend_header(url, s.confirm_header, s.timeout)
            except (OSError, ValueError) as exc:
                raise RouterError(f"{service}: cannot read the live side through {url}: {exc}",
                                  hint="check that nginx runs and serves the frontend") from exc
            where = f"{url} ({s.confirm_header})"
        side = self._side_of(service, upstream)
        if side is None:
            raise RouterError(
                f"{service}: {where} names {upstream!r}, not "
                f"{s.backend_name(service, 'blue')} or {s.backend_name(service, 'green')}",
                hint=f"the service's location needs `proxy_pass http://${livefile.variable(service)};`"
                f" and `add_header {s.confirm_header} $proxy_host always;`, and "
                f"`include {s.live_file};` in the http block",
            )
        return side

    def flip(self, service: str, to_side: Side) -> FlipResult:
        s = self.settings
        started = time.perf_counter()
        target = s.backend_name(service, to_side)
        with livefile.Locked(s.live_file) as lock:
            try:
                old_text: str | None = Path(s.live_file).read_text()
            except FileNotFoundError:
                old_text = None
            except OSError as exc:
                raise RouterError(f"cannot read {s.live_file}: {exc.strerror}") from exc
            entries = livefile.parse(old_text or "", s.live_file)
            before = entries.get(self._key(service))
            entries[self._key(service)] = target
            master = self._master()
            old_workers = _workers(master)
            lock.write(livefile.render(entries))
            for step in (["-t", "-q"], ["-s", "reload"]):
                problem = self._nginx(*step)
                if problem is not None:
                    self._put_back(lock, old_text)
                    raise RouterError(
                        f"{service}: `nginx {' '.join(step)}` failed, nothing moved: {problem}",
                        hint="fix nginx's config (or start nginx), then flip again")
        # until every worker of the old configuration stopped taking connections: right
        # after the reload one of them may still accept one, with the old routing
        deadline = time.monotonic() + max(5.0, 2 * s.timeout)
        while master and not _workers(master).isdisjoint(old_workers):
            if time.monotonic() > deadline:
                raise FlipIncomplete(
                    f"{service}: nginx reloaded, but workers of the old configuration "
                    f"({sorted(_workers(master) & old_workers)}) still take connections",
                    persisted=True, confirmed=False)
            time.sleep(0.02)
        confirmed_by = ["nginx -t", "reload"]
        url = s.frontends.get(service)
        if url is not None:
            try:
                confirm_by_request(service, url, s.confirm_header, {target}, s.timeout,
                                   window_s=max(5.0, 2 * s.timeout))
            except RouterError as exc:
                raise FlipIncomplete(exc.message, persisted=True, confirmed=False,
                                     hint=exc.hint) from exc
            confirmed_by.append("request")
        return FlipResult(service, self._side_of(service, before), to_side,
                          time.perf_counter() - started, confirmed_by, persisted=True)

    def drain(self, service: str, side: Side, deadline_s: float) -> DrainResult:
        """The old workers finish their requests after a reload; wait until none is left."""
        started = time.monotonic()
        while True:
            left = _shutting_down_workers()
            if left == 0 or time.monotonic() - started >= deadline_s:
                return DrainResult(service, side, left, time.monotonic() - started)
            time.sleep(0.1)

    def health(self, service: str, side: Side) -> SideHealth:
        name = self.settings.backend_name(service, side)
        servers = self._upstream_servers().get(name)
        if servers is None:
            raise RouterError(f"{service}: nginx has no `upstream {name}` (nginx -T)",
                              hint="define both upstream groups, named by upstream_template")
        return SideHealth(service, side, name,
                          [self._server_health(address, down) for address, down in servers])

    def counters(self, service: str, side: Side) -> TrafficCounters | None:
        log = self.settings.access_log
        if log is None:
            return None
        name = self.settings.backend_name(service, side).encode()
        responses = errors = 0
        try:
            with open(log, "rb") as fh:
                size = os.fstat(fh.fileno()).st_size
                fh.seek(max(0, size - MAX_LOG_BYTES))
                for line in fh:
                    fields = line.split(b" ", 2)
                    if len(fields) >= 2 and fields[0] == name:
                        responses += 1
                        errors += fields[1].startswith(b"5")
        except FileNotFoundError:
            return TrafficCounters(0, 0)
        except OSError as exc:
            raise RouterError(f"cannot read the access log {log}: {exc.strerror}") from exc
        return TrafficCounters(responses, errors)

    def close(self) -> None:
        """Nothing held open."""

    def readiness(self, services: Sequence[str]) -> list[Check]:
        """`routers.base.SelfChecking`: see `nginx.readiness`."""
        from orchestrator.routers.nginx.readiness import readiness

        return readiness(self, services)

    # -- helpers ---------------------------------------------------------------------------

    def _key(self, service: str) -> str:
        return livefile.variable(service).removeprefix("bluegreen_")

    def _side_of(self, service: str, upstream: str | None) -> Side | None:
        for side in SIDES:
            if upstream == self.settings.backend_name(service, side):
                return side
        return None

    def _nginx(self, *args: str) -> str | None:
        """Run nginx with `args` and the config: None on success, else what it said."""
        s = self.settings
        try:
            done = subprocess.run([s.nginx, *args, "-c", s.conf], capture_output=True,
                                  text=True, timeout=max(10.0, s.timeout), env=ENV, check=False)
        except (OSError, subprocess.TimeoutExpired) as exc:
            return str(exc)
        if done.returncode == 0:
            return None
        said = (done.stderr or done.stdout).strip().splitlines()
        return " / ".join(said[-3:])[:600] or f"exit {done.returncode}"

    def _master(self) -> int:
        """nginx's master PID from its pid file (`pid` in the config; 0: unknown)."""
        try:
            self._upstream_servers()  # reads `nginx -T`, and with it the pid directive
        except RouterError:
            pass  # `nginx -t` says what is wrong with the config, next
        try:
            return int(Path(self._pid_file).read_text().split()[0])
        except (OSError, ValueError, IndexError):
            return 0

    def _put_back(self, lock: livefile.Locked, old_text: str | None) -> None:
        if old_text is None:
            Path(self.settings.live_file).unlink(missing_ok=True)
        else:
            lock.write(old_text)

    def _upstream_servers(self) -> dict[str, list[tuple[str, bool]]]:
        if self._upstreams is None:
            s = self.settings
            try:
                done = subprocess.run([s.nginx, "-T", "-q", "-c", s.conf], capture_output=True,
                                      text=True, timeout=max(10.0, s.timeout), env=ENV,
                                      check=False)
            except (OSError, subprocess.TimeoutExpired) as exc:
                raise RouterError(f"cannot run `nginx -T`: {exc}") from exc
            if done.returncode != 0:
                raise RouterError(f"`nginx -T -c {s.conf}` failed: {done.stderr.strip()[:400]}")
            text = re.sub(r"#[^\n]*", "", done.stdout)
            pid = _PID.search(text)
            self._pid_file = pid.group(1).strip() if pid else DEFAULT_PID_FILE
            self._upstreams = {
                match.group(1): [(server.group(1), " down" in f" {server.group(2)}")
                                 for server in _SERVER.finditer(match.group(2))]
                for match in _UPSTREAM.finditer(text)
            }
        return self._upstreams

    def _server_health(self, address: str, down: bool) -> ServerHealth:
        if down:
            return ServerHealth(address, "MAINT", "down")
        host, _, port = address.rpartition(":")
        if not port.isdigit():
            host, port = address, "80"
        try:
            with socket.create_connection((host.strip("[]"), int(port)),
                                          timeout=self.settings.timeout):
                return ServerHealth(address, "UP", "L4OK")
        except OSError as exc:
            return ServerHealth(address, "DOWN", f"L4CON {exc.strerror or exc}")


def _workers(master: int) -> set[int]:
    """The workers of `master` that take connections (not the ones shutting down)."""
    found: set[int] = set()
    if not master:
        return found
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            with open(f"/proc/{entry.name}/cmdline", "rb") as fh:
                title = fh.read(200)
            with open(f"/proc/{entry.name}/stat", "rb") as fh:
                parent = int(fh.read().rsplit(b")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            continue
        if parent == master and title.startswith(b"nginx: worker process") and \
                not title.startswith(SHUTTING_DOWN):
            found.add(int(entry.name))
    return found


def _shutting_down_workers() -> int:
    count = 0
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            with open(f"/proc/{entry.name}/cmdline", "rb") as fh:
                if fh.read(200).startswith(SHUTTING_DOWN):
                    count += 1
        except OSError:
            continue
    return count
