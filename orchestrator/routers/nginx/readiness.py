"""What an nginx setup needs before a first flip (`bluegreen doctor`, the rollout's
precheck), read from nginx itself (`nginx -t`, `nginx -T`) and the files a flip uses:

- `router config`: `nginx -t` passes (a flip runs it before every reload);
- `router live file`: the live file exists, holds only bluegreen's lines, and its
  directory can be written (a flip writes a temporary file beside it and renames it);
- `router include`: nginx's config includes the live file (`nginx -T` lists it), and each
  service's `proxy_pass` names its variable (`http://$bluegreen_web`);
- `router confirm header`: `add_header X-Bluegreen-Backend $proxy_host always;` (without
  `always` nginx leaves the header off error responses: the live side cannot be read back
  while the upstream fails);
- `router access log`: with `router.access_log`, nginx writes it in a format that begins
  `$proxy_host $status` (the bake's counters), and this user can read it;
- `router master pid`: the pid file (`pid`, else /run/nginx.pid) can be read and names a
  running nginx master (a flip waits for the old workers of that master).

Every check is a `routers.base.Check`; none raises.
"""

from __future__ import annotations

import os
import re
import subprocess
from collections.abc import Sequence
from pathlib import Path

from orchestrator.errors import RouterError
from orchestrator.routers.base import Check
from orchestrator.routers.nginx import livefile
from orchestrator.routers.nginx.router import _PID, DEFAULT_PID_FILE, ENV, NginxRouter

_LOG_FORMAT = re.compile(
    r"\blog_format\s+(\S+)\s+(?:escape=\S+\s+)?((?:'[^']*'\s*|\"[^\"]*\"\s*)+);")
_ACCESS_LOG = re.compile(r"\baccess_log\s+([^\s;]+)(?:\s+([^\s;]+))?[^;]*;")
COUNTED = "$proxy_host $status"
"""How the bake's counters read a line of the access log (`router.counters`)."""


def readiness(router: NginxRouter, services: Sequence[str]) -> list[Check]:
    """The checks of the module docstring."""
    s = router.settings
    problem = router._nginx("-t", "-q")
    checks = [Check("router config", True, f"`{s.nginx} -t -c {s.conf}` passes")
              if problem is None else
              Check("router config", False, f"`{s.nginx} -t -c {s.conf}` failed: {problem}",
                    "fix nginx's config until `nginx -t` passes (a flip runs it first)")]
    checks.append(live_file(router))
    try:
        dump = _dump(router)
    except RouterError as exc:
        return [*checks, Check("router include", None, exc.message,
                               "make `nginx -T` work for this user, then run doctor again")]
    text = re.sub(r"#[^\n]*", "", dump)
    return [*checks, included(router, dump, text, services), confirm_header(router, text),
            access_log(router, text), master_pid(text)]


def _dump(router: NginxRouter) -> str:
    s = router.settings
    try:
        done = subprocess.run([s.nginx, "-T", "-q", "-c", s.conf], capture_output=True,
                              text=True, timeout=max(10.0, s.timeout), env=ENV, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise RouterError(f"cannot run `{s.nginx} -T`: {exc}") from exc
    if done.returncode != 0:
        raise RouterError(f"`{s.nginx} -T -c {s.conf}` failed: {done.stderr.strip()[:400]}")
    return done.stdout


def live_file(router: NginxRouter) -> Check:
    path = router.settings.live_file
    name = "router live file"
    parent = Path(path).parent
    try:
        entries = livefile.read(path)
    except RouterError as exc:
        return Check(name, False, exc.message, exc.hint or f"let bluegreen own {path}")
    if not Path(path).exists():
        return Check(name, False, f"{path} does not exist (nginx must include it at start)",
                     "write each service's live upstream into it: `map $host $bluegreen_"
                     "SERVICE { default SERVICE_blue; }` (what `bluegreen init "
                     "--nginx-conf` writes)")
    if not os.access(parent, os.W_OK | os.X_OK):
        return Check(name, False, f"{path}: directory {parent} is not writable by this user "
                     "(a flip writes a temporary file beside it and renames it)",
                     "run bluegreen as a user that may write that directory, or move the "
                     "live file (router.live_file and the include together)")
    return Check(name, True, f"{path} holds {len(entries)} service(s) and can be rewritten")


def included(router: NginxRouter, dump: str, text: str, services: Sequence[str]) -> Check:
    """`nginx -T` prints each file it read after `# configuration file PATH:`."""
    path = router.settings.live_file
    name = "router include"
    if f"# configuration file {path}:" not in dump:
        return Check(name, False, f"nginx's config ({router.settings.conf}) does not include "
                     f"{path}: a flip would change a file nginx never reads",
                     f"add `include {path};` in the http block, then reload nginx")
    unrouted = [svc for svc in services if not re.search(
        rf"\bproxy_pass\s+https?://\${livefile.variable(svc)}\b", text)]
    if unrouted:
        return Check(name, False, f"{path} is included, but no `proxy_pass` uses the variable "
                     f"of {', '.join(unrouted)}",
                     "in each service's location: " + "; ".join(
                         f"`proxy_pass http://${livefile.variable(svc)};`" for svc in unrouted))
    return Check(name, True, f"{path} is included and each service's proxy_pass follows it")


def confirm_header(router: NginxRouter, text: str) -> Check:
    header = router.settings.confirm_header
    name = "router confirm header"
    fix = f"in each service's location: `add_header {header} $proxy_host always;`"
    found = re.findall(rf"\badd_header\s+[\"']?{re.escape(header)}[\"']?\s+([^\s;]+)"
                       r"(\s+always)?\s*;", text, re.I)
    if not found:
        return Check(name, False, f"no `add_header {header} ...` in nginx's config: the live "
                     "side cannot be read back and no flip can be confirmed", fix)
    if any(value != "$proxy_host" for value, _always in found):
        values = sorted({value for value, _always in found})
        return Check(name, False, f"add_header {header} sends {', '.join(values)}: the live "
                     "side is read from the upstream's name ($proxy_host)", fix)
    if not all(always for _value, always in found):
        return Check(name, False, f"add_header {header} without `always`: nginx leaves the "
                     "header off error responses (5xx), so the live side cannot be read back "
                     "while an upstream fails", fix)
    return Check(name, True, f"add_header {header} $proxy_host always")


def access_log(router: NginxRouter, text: str) -> Check:
    path = router.settings.access_log
    name = "router access log"
    if path is None:
        return Check(name, True, "router.access_log is not set: no counters (the bake "
                     "judges the frontends' answers only)")
    formats = {m.group(1): _joined(m.group(2)) for m in _LOG_FORMAT.finditer(text)}
    fix = (f"`log_format bluegreen '{COUNTED} $upstream_response_time';` in the http block "
           f"and `access_log {path} bluegreen;` in each service's location")
    written = [m.group(2) or "combined" for m in _ACCESS_LOG.finditer(text)
               if m.group(1) == path]
    if not written:
        return Check(name, False, f"nginx writes no access log at {path} (router.access_log): "
                     "the bake would count nothing", fix)
    wrong = sorted({f for f in written if not formats.get(f, "").startswith(COUNTED)})
    if wrong:
        return Check(name, False, f"{path} is written in format {', '.join(wrong)}, which "
                     f"does not begin `{COUNTED}`: the bake's counters cannot read it", fix)
    if Path(path).exists() and not os.access(path, os.R_OK):
        return Check(name, False, f"{path} cannot be read by this user",
                     "let this user read the access log (e.g. its group)")
    return Check(name, True, f"{path} in format {written[0]} ({COUNTED} ...)")


def _joined(quoted: str) -> str:
    return "".join(a or b for a, b in re.findall(r"'([^']*)'|\"([^\"]*)\"", quoted))


def master_pid(text: str) -> Check:
    found = _PID.search(text)
    pid_file = found.group(1).strip() if found else DEFAULT_PID_FILE
    name = "router master pid"
    try:
        pid = int(Path(pid_file).read_text().split()[0])
    except OSError as exc:
        return Check(name, False, f"{pid_file} cannot be read: {exc.strerror}",
                     "start nginx, and let this user read its pid file (`pid` in nginx.conf)")
    except (ValueError, IndexError):
        return Check(name, False, f"{pid_file} holds no pid", "restart nginx")
    try:
        title = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return Check(name, False, f"{pid_file} names pid {pid}, which does not run",
                     "start nginx (or remove the stale pid file and start it)")
    if not title.startswith(b"nginx: master process"):
        return Check(name, False, f"{pid_file} names pid {pid}, which is not an nginx master "
                     f"({title[:60].decode(errors='replace')!r})", "restart nginx")
    return Check(name, True, f"{pid_file}: nginx master {pid}")
