"""Command router: drive any load balancer through the user's own script.

Protocol (the script is run directly with an argument list, never through a shell)::

    SCRIPT live   SERVICE          -> {"live": "blue"}
    SCRIPT flip   SERVICE SIDE     -> {"ok": true}
    SCRIPT drain  SERVICE SIDE     -> {"ok": true, "sessions_left": 0}
    SCRIPT health SERVICE SIDE     -> {"servers": [{"name": "web1", "status": "UP",
                                                    "check_status": "L7OK"}]}
    SCRIPT counters SERVICE SIDE   -> {"responses": 1200, "errors_5xx": 3}
                                      (only with `counters: true`)

Environment: the minimal one (`processes.child_env`: PATH, HOME, locale, ...; never
bluegreen's secrets such as PGPASSWORD or its tokens), the variables named in `pass_env`,
plus `BLUEGREEN_ACTION` (live/flip/drain/health), `BLUEGREEN_SERVICE`, `BLUEGREEN_SIDE`
(flip, drain, health) and `BLUEGREEN_DEADLINE_S` (drain: seconds the script may wait for
sessions to end).

Rules:
- Exit 0 and print exactly one JSON object on stdout (diagnostics go to stderr).
  Anything else -- a non-zero exit, no output, text that is not one JSON object, a missing
  field, or running longer than `timeout` seconds (`timeout + deadline` for drain) -- is an
  error, reported with the tail of stderr; the script is killed on timeout.
- `{"ok": false, "error": "..."}` reports a refusal; the message is passed on.
- `flip` must only answer `{"ok": true}` once new traffic goes to SIDE *and* the change is
  persisted (survives a reload/restart of the load balancer). It may add
  `"confirmed_by": ["request"]` to say how it checked, and `"persisted": false` if it could
  not persist: the flip is then reported incomplete (traffic moved, not persisted; exit 1)
  unless the config says `allow_unpersisted: true`. With a `frontends` URL for the
  service and `confirm_header`, a request through it must show the new side.
- `drain` waits up to BLUEGREEN_DEADLINE_S and reports the sessions still open;
  `sessions_left` defaults to 0.
- `health` lists every server of the side; `status` uses HAProxy's words (UP, DOWN, MAINT,
  DRAIN); `check_status` is optional.
"""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path
from typing import Any

from orchestrator.errors import FlipIncomplete, RouterError
from orchestrator.processes import child_env, run
from orchestrator.routers.base import (
    DrainResult,
    FlipResult,
    ServerHealth,
    SideHealth,
    TrafficCounters,
)
from orchestrator.routers.command.settings import CommandRouterSettings
from orchestrator.routers.confirm import confirm_by_request
from orchestrator.secrets import redact_text
from orchestrator.sides import SIDES, Side
from orchestrator.trust import check_trusted

_STDERR_TAIL = 800
CONFIRM_WINDOW_S = 2.0


class CommandRouter:
    """`Router` that runs `settings.script` once per call."""

    def __init__(self, settings: CommandRouterSettings) -> None:
        # a program bluegreen runs: refused when others could have changed it
        check_trusted(Path(settings.script), "router script")
        self.settings = settings

    def _call(
        self,
        action: str,
        service: str,
        side: Side | None = None,
        *,
        deadline_s: float | None = None,
    ) -> dict[str, Any]:
        argv = [self.settings.script, action, service]
        env = child_env(keep=self.settings.pass_env)
        env["BLUEGREEN_ACTION"] = action
        env["BLUEGREEN_SERVICE"] = service
        if side is not None:
            argv.append(side)
            env["BLUEGREEN_SIDE"] = side
        timeout = self.settings.timeout
        if deadline_s is not None:
            env["BLUEGREEN_DEADLINE_S"] = f"{deadline_s:g}"
            timeout += max(0.0, deadline_s)
        shown = " ".join(argv)
        try:
            done = run(argv, timeout=timeout, env=env)
        except subprocess.TimeoutExpired as exc:
            raise RouterError(
                f"router script `{shown}` did not finish within {timeout:g} s"
                + _tail(_text(exc.stderr)),
                hint="raise `timeout` under router: or make the script faster",
            ) from exc
        except OSError as exc:
            raise RouterError(
                f"router script `{shown}` cannot be run: {exc}",
                hint="`script` must be an executable file (chmod +x, with a #! line)",
            ) from exc
        if done.returncode != 0:
            raise RouterError(
                f"router script `{shown}` exited {done.returncode}" + _tail(done.stderr)
            )
        try:
            reply = json.loads(done.stdout)
        except json.JSONDecodeError as exc:
            raise RouterError(
                f"router script `{shown}` did not print exactly one JSON object "
                f"({exc.msg}); stdout: {redact_text(done.stdout[:200])!r}" + _tail(done.stderr)
            ) from exc
        if not isinstance(reply, dict):
            raise RouterError(
                f"router script `{shown}` printed JSON that is not an object: {reply!r:.200}"
            )
        if reply.get("ok") is False:
            raise RouterError(
                f"router script `{shown}` refused: "
                f"{redact_text(str(reply.get('error') or 'no reason given'))}"
                + _tail(done.stderr)
            )
        return reply

    def live(self, service: str) -> Side:
        reply = self._call("live", service)
        side = reply.get("live")
        if side not in SIDES:
            raise RouterError(
                f"router script: `live {service}` answered {reply!r}; expected "
                '{"live": "blue"} or {"live": "green"}'
            )
        return side  # type: ignore[no-any-return]

    def flip(self, service: str, to_side: Side) -> FlipResult:
        before = time.monotonic()
        reply = self._call("flip", service, to_side)
        if reply.get("ok") is not True:
            raise RouterError(
                f'router script: `flip {service} {to_side}` answered {reply!r}; expected {{"ok": true}}'
            )
        confirmed = reply.get("confirmed_by", ["script"])
        if not isinstance(confirmed, list) or not all(isinstance(c, str) for c in confirmed):
            raise FlipIncomplete(
                f"router script: `confirmed_by` must be a list of strings: {reply!r}",
                persisted=False,
            )
        persisted = reply.get("persisted", True)
        if not isinstance(persisted, bool):
            raise FlipIncomplete(
                f"router script: `persisted` must be true or false: {reply!r}", persisted=False
            )
        if not persisted and not self.settings.allow_unpersisted:
            raise FlipIncomplete(
                f"router script: `flip {service} {to_side}` moved traffic but says it is not "
                "persisted (a restart of the load balancer may undo it)",
                persisted=False,
                hint="make the script persist the change, or set `allow_unpersisted: true` "
                "under router: if that is acceptable",
            )
        url = self.settings.frontends.get(service)
        header = self.settings.confirm_header
        if url and header:
            try:
                confirm_by_request(service, url, header, {to_side, f"{service}_{to_side}"},
                                   min(self.settings.timeout, 5.0), CONFIRM_WINDOW_S)
            except RouterError as exc:
                raise FlipIncomplete(
                    exc.message, persisted=persisted, confirmed=False, hint=exc.hint
                ) from exc
            confirmed = [*confirmed, "request"]
        return FlipResult(
            service=service,
            from_side=None,
            to_side=to_side,
            seconds=time.monotonic() - before,
            confirmed_by=list(confirmed),
            persisted=persisted,
        )

    def drain(self, service: str, side: Side, deadline_s: float) -> DrainResult:
        before = time.monotonic()
        reply = self._call("drain", service, side, deadline_s=deadline_s)
        left = reply.get("sessions_left", 0)
        if reply.get("ok") is not True or not isinstance(left, int) or left < 0:
            raise RouterError(
                f"router script: `drain {service} {side}` answered {reply!r}; expected "
                '{"ok": true, "sessions_left": 0}'
            )
        return DrainResult(
            service=service, side=side, sessions_left=left, seconds=time.monotonic() - before
        )

    def counters(self, service: str, side: Side) -> TrafficCounters | None:
        """`SCRIPT counters SERVICE SIDE` -> {"responses": N, "errors_5xx": M} when the
        config says the script has counters (`counters: true`), else None."""
        if not self.settings.counters:
            return None
        reply = self._call("counters", service, side)
        responses, errors = reply.get("responses"), reply.get("errors_5xx")
        if (
            not isinstance(responses, int)
            or not isinstance(errors, int)
            or isinstance(responses, bool)
            or isinstance(errors, bool)
            or responses < 0
            or errors < 0
        ):
            raise RouterError(
                f"router script: `counters {service} {side}` answered {reply!r}; expected "
                '{"responses": N, "errors_5xx": M} (non-negative integers)'
            )
        return TrafficCounters(responses, errors)

    def health(self, service: str, side: Side) -> SideHealth:
        reply = self._call("health", service, side)
        raw = reply.get("servers")
        if not isinstance(raw, list):
            raise RouterError(
                f"router script: `health {service} {side}` answered {reply!r}; expected "
                '{"servers": [{"name": ..., "status": ...}]}'
            )
        servers: list[ServerHealth] = []
        for item in raw:
            if (
                not isinstance(item, dict)
                or not isinstance(item.get("name"), str)
                or not isinstance(item.get("status"), str)
            ):
                raise RouterError(
                    f"router script: server entry {item!r} needs string `name` and `status`"
                )
            sessions = item.get("sessions", 0)
            servers.append(
                ServerHealth(
                    name=item["name"],
                    status=item["status"],
                    check_status=str(item.get("check_status", "")),
                    sessions=sessions if isinstance(sessions, int) else 0,
                )
            )
        return SideHealth(service=service, side=side, backend=service, servers=servers)

    def close(self) -> None:
        """Nothing is kept open between calls."""


def _text(data: str | bytes | None) -> str:
    if data is None:
        return ""
    if isinstance(data, bytes):
        return data.decode("utf-8", errors="replace")
    return data


def _tail(stderr: str | None) -> str:
    """The end of a script's stderr for an error message, with secrets taken out (it ends
    up in run results and the audit chain): `orchestrator.secrets.redact_text`."""
    text = redact_text((stderr or "").strip())
    if not text:
        return ""
    if len(text) > _STDERR_TAIL:
        text = "..." + text[-_STDERR_TAIL:]
    return f"\n  stderr: {text}"
