"""Built-in declarative checks, one pydantic model per `kind`.

Each check runs over a testinfra `Host` (our strict SSH backend) and returns one or more
`CheckResult`s with a stable id such as "package:demo-web". Missing data, a timeout or a
command that could not run is "error" or "fail", never "pass".

YAML shapes (one list item each)::

    - {kind: http, url: "http://{host}:8080/health", expect_status: 200, body_contains: ok,
       max_latency_ms: 500}
    - {kind: service, name: demo-web}
    - {kind: listening, ports: [22, 8080], allow: [68]}
    - {kind: package, name: demo-openssl, fixed: 3.0.15-1, advisory: DEMO-2026-01,
       cves: [CVE-2026-0001]}
    - {kind: stale-processes}
    - {kind: reboot-pending}
    - {kind: file, path: /etc/passwd, mode: "0644", owner: root, content_regex: "^root:"}
    - {kind: sshd, settings: {passwordauthentication: "no", permitrootlogin: prohibit-password}}
    - {kind: sysctl, values: {kernel.randomize_va_space: 2}}
    - {kind: command, argv: [demo-web, --version], expect_rc: 0, stdout_regex: "^1\\.2"}
"""

from __future__ import annotations

import dataclasses
import re
import shlex
import time
import urllib.error
import urllib.request
from collections.abc import Iterable, Sequence
from typing import Annotated, Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError, field_validator

from orchestrator.errors import BadInput
from orchestrator.probes.backend import DeadlineExceeded
from orchestrator.probes.base import CheckResult, ProbeTarget, Status
from orchestrator.probes.connection import CommandTimeout, ProbeConnectionError

Outcome = tuple[str, Status, str]  # (check id, status, evidence)

_VERSION_RE = re.compile(r"^[A-Za-z0-9.+~:_-]+$")


# ---------------------------------------------------------------------------------------
# Pure parsers (unit-tested without hosts)
# ---------------------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class Listener:
    address: str
    port: int
    processes: tuple[str, ...] = ()

    def describe(self) -> str:
        procs = ", ".join(self.processes) or "unknown process"
        return f"port {self.port} on {self.address} ({procs})"


_SS_PROC_RE = re.compile(r'\("([^"]*)",pid=(\d+)')


def parse_ss_listening(output: str) -> list[Listener]:
    """Parse `ss -Htlnp` lines: State Recv-Q Send-Q Local:Port Peer:Port [users:(...)]."""
    listeners: list[Listener] = []
    for line in output.splitlines():
        parts = line.split(None, 5)
        if len(parts) < 5 or parts[0] != "LISTEN":
            continue
        local = parts[3]
        addr, sep, port = local.rpartition(":")
        if not sep or not port.isdigit():
            continue
        addr = addr.split("%", 1)[0].strip("[]")
        rest = parts[5] if len(parts) > 5 else ""
        procs = tuple(f"{comm} pid {pid}" for comm, pid in _SS_PROC_RE.findall(rest))
        listeners.append(Listener(addr, int(port), procs))
    return listeners


def deleted_path_from_maps_line(line: str) -> str | None:
    """The path of a `/proc/PID/maps` line that maps a deleted file, else None."""
    parts = line.split(None, 5)
    if len(parts) < 6:
        return None
    path = parts[5].rstrip("\n")
    if not path.endswith(" (deleted)"):
        return None
    return path[: -len(" (deleted)")]


def unit_from_cgroup(text: str) -> str | None:
    """The systemd unit of a process from /proc/PID/cgroup (last .service/.scope)."""
    for line in text.replace(" ", "\n").splitlines():
        path = line.rsplit(":", 1)[-1] if ":" in line else line
        for part in reversed(path.split("/")):
            if part.endswith((".service", ".scope")):
                return part
    return None


@dataclasses.dataclass(frozen=True)
class StaleMapping:
    pid: int
    comm: str
    unit: str | None
    path: str

    def describe(self) -> str:
        unit = f", unit {self.unit}" if self.unit else ""
        return f"{self.comm} (pid {self.pid}{unit}) maps deleted {self.path}"


DEFAULT_STALE_PREFIXES = (
    "/usr/",
    "/lib/",
    "/lib32/",
    "/lib64/",
    "/libx32/",
    "/bin/",
    "/sbin/",
    "/opt/",
)
DEFAULT_STALE_IGNORE = ("memfd:", "/SYSV", "/dev/shm/")


def parse_stale_scan(
    output: str,
    prefixes: Sequence[str] = DEFAULT_STALE_PREFIXES,
    ignore: Sequence[str] = DEFAULT_STALE_IGNORE,
) -> list[StaleMapping]:
    """Parse lines `PID<TAB>COMM<TAB>CGROUP<TAB>MAPS-LINE` from the remote scan script."""
    seen: set[tuple[int, str]] = set()
    found: list[StaleMapping] = []
    for line in output.splitlines():
        fields = line.split("\t", 3)
        if len(fields) != 4 or not fields[0].isdigit():
            continue
        path = deleted_path_from_maps_line(fields[3])
        if path is None or any(token in path for token in ignore):
            continue
        if not path.startswith(tuple(prefixes)):
            continue
        key = (int(fields[0]), path)
        if key in seen:
            continue
        seen.add(key)
        found.append(StaleMapping(int(fields[0]), fields[1], unit_from_cgroup(fields[2]), path))
    return found


def parse_sshd_t(output: str) -> dict[str, list[str]]:
    """Parse `sshd -T`: lower-case keyword -> values (repeated keywords keep every value)."""
    settings: dict[str, list[str]] = {}
    for line in output.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        key, _, value = line.partition(" ")
        settings.setdefault(key.lower(), []).append(value.strip())
    return settings


def _norm(value: object) -> str:
    return " ".join(str(value).split()).lower()


# ---------------------------------------------------------------------------------------
# Checks
# ---------------------------------------------------------------------------------------
class BaseCheck(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    kind: str
    id: str | None = None
    """Overrides the stable id of the check (the default is derived from its settings)."""

    default_name: ClassVar[str] = "check"

    def check_id(self, detail: str | None = None) -> str:
        if self.id:
            return self.id if detail is None else f"{self.id}:{detail}"
        return self.kind if detail is None else f"{self.kind}:{detail}"

    def primary_id(self) -> str:
        return self.check_id()

    def _single_id(self, detail: str) -> str:
        """Id of a check that yields one result: the `id` override, else `kind:detail`."""
        return self.id or f"{self.kind}:{detail}"

    def outcomes(self, host: Any, target: ProbeTarget) -> Iterable[Outcome]:
        raise NotImplementedError

    def run(self, host: Any, target: ProbeTarget) -> list[CheckResult]:
        """Run over `host`; any exception becomes an "error" result with its reason."""
        start = time.monotonic()
        results: list[CheckResult] = []
        try:
            for cid, status, evidence in self.outcomes(host, target):
                results.append(
                    CheckResult(target.name, cid, status, evidence, time.monotonic() - start)
                )
        except DeadlineExceeded as exc:
            results.append(self._error(target, start, exc.message))
        except CommandTimeout as exc:
            results.append(self._error(target, start, f"timeout: {exc.message}"))
        except ProbeConnectionError as exc:
            results.append(self._error(target, start, exc.message))
        except Exception as exc:  # a probe must report, not crash the run
            results.append(self._error(target, start, f"{type(exc).__name__}: {exc}"))
        if not results:
            results.append(self._error(target, start, "the check produced no result"))
        return results

    def _error(self, target: ProbeTarget, start: float, evidence: str) -> CheckResult:
        return CheckResult(
            target.name, self.primary_id(), "error", evidence, time.monotonic() - start
        )


def _run(host: Any, command: str, *args: str) -> tuple[int, str, str]:
    out = host.run(command, *args)
    return int(out.rc), str(out.stdout), str(out.stderr)


class HttpCheck(BaseCheck):
    """Fetched from the orchestrator (not from the host) with urllib."""

    kind: Literal["http"]
    url: str
    expect_status: int = 200
    body_contains: str | None = None
    body_regex: str | None = None
    max_latency_ms: float | None = None
    timeout_s: float = 5.0

    def primary_id(self) -> str:
        return self._single_id(self.url)

    def outcomes(self, host: Any, target: ProbeTarget) -> Iterable[Outcome]:
        url = self.url.format(host=target.address, name=target.name)
        cid = self.primary_id()
        start = time.monotonic()
        try:
            with urllib.request.urlopen(url, timeout=self.timeout_s) as resp:  # noqa: S310
                status = int(resp.status)
                body = resp.read(1 << 20)
        except urllib.error.HTTPError as exc:
            status = int(exc.code)
            body = exc.read(1 << 20) if exc.fp is not None else b""
        except (urllib.error.URLError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            yield cid, "fail", f"GET {url} failed: {reason}"
            return
        ms = (time.monotonic() - start) * 1000
        text = body.decode(errors="replace")
        problems: list[str] = []
        if status != self.expect_status:
            problems.append(f"status {status} != {self.expect_status}")
        if self.body_contains is not None and self.body_contains not in text:
            problems.append(f"body does not contain {self.body_contains!r}")
        if self.body_regex is not None and not re.search(self.body_regex, text, re.M):
            problems.append(f"body does not match /{self.body_regex}/")
        if self.max_latency_ms is not None and ms > self.max_latency_ms:
            problems.append(f"latency {ms:.0f} ms > {self.max_latency_ms:.0f} ms")
        if problems:
            yield cid, "fail", f"GET {url}: " + "; ".join(problems)
        else:
            yield cid, "pass", f"GET {url}: status {status} in {ms:.0f} ms"


class ServiceCheck(BaseCheck):
    kind: Literal["service"]
    name: str
    running: bool = True
    enabled: bool = True

    def primary_id(self) -> str:
        return self._single_id(self.name)

    def outcomes(self, host: Any, target: ProbeTarget) -> Iterable[Outcome]:
        svc = host.service(self.name)
        running = bool(svc.is_running)
        enabled = bool(svc.is_enabled)
        problems = []
        if running != self.running:
            problems.append("running" if running else "not running")
        if enabled != self.enabled:
            problems.append("enabled" if enabled else "not enabled")
        state = (
            f"{'running' if running else 'not running'}, {'enabled' if enabled else 'not enabled'}"
        )
        if problems:
            yield self.primary_id(), "fail", f"unit {self.name} is {state}"
        else:
            yield self.primary_id(), "pass", f"unit {self.name} is {state}"


class ListeningCheck(BaseCheck):
    """`ports` must listen (TCP); with `allow`, any other listening TCP port fails."""

    kind: Literal["listening"]
    ports: list[int] = Field(default_factory=list)
    allow: list[int] | None = None

    def outcomes(self, host: Any, target: ProbeTarget) -> Iterable[Outcome]:
        rc, out, err = _run(host, "ss -Htlnp")
        if rc != 0:
            yield self.primary_id(), "error", f"ss -Htlnp failed (rc {rc}): {err.strip()}"
            return
        listeners = parse_ss_listening(out)
        listening_ports = {x.port for x in listeners}
        for port in self.ports:
            cid = self.check_id(str(port))
            if port in listening_ports:
                who = [x.describe() for x in listeners if x.port == port]
                yield cid, "pass", "listening: " + "; ".join(who)
            else:
                yield cid, "fail", f"nothing listens on TCP port {port}"
        if self.allow is not None:
            allowed = set(self.ports) | set(self.allow)
            extra = [x for x in listeners if x.port not in allowed]
            cid = self.check_id("allow-list")
            if extra:
                yield (
                    cid,
                    "fail",
                    "unexpected listening TCP " + "; ".join(x.describe() for x in extra),
                )
            else:
                yield cid, "pass", f"only allowed ports listen: {sorted(listening_ports)}"
        if not self.ports and self.allow is None:
            yield self.primary_id(), "error", "nothing to check: give ports and/or allow"


class PackageCheck(BaseCheck):
    """Installed version >= fixed, compared by the host's own package manager."""

    kind: Literal["package"]
    name: str
    fixed: str
    advisory: str | None = None
    cves: list[str] = Field(default_factory=list)

    @field_validator("name", "fixed")
    @classmethod
    def _safe(cls, v: str) -> str:
        if not _VERSION_RE.match(v):
            raise ValueError("only letters, digits and . + ~ : _ - are allowed")
        return v

    def primary_id(self) -> str:
        return self._single_id(self.name)

    def _advisory(self) -> str:
        if not self.advisory and not self.cves:
            return ""
        inner = self.advisory or ""
        if self.cves:
            inner = f"{inner}: {', '.join(self.cves)}" if inner else ", ".join(self.cves)
        return f" ({inner})"

    def outcomes(self, host: Any, target: ProbeTarget) -> Iterable[Outcome]:
        cid = self.primary_id()
        if host.exists("dpkg-query"):
            rc, out, err = _run(host, "dpkg-query -W -f '${Status}\\t${Version}' %s", self.name)
            status, _, installed = out.partition("\t")
            if rc != 0 or not status.strip().endswith(" installed") or not installed:
                yield (
                    cid,
                    "fail",
                    f"{self.name} not installed (fixed {self.fixed}){self._advisory()}",
                )
                return
            installed = installed.strip()
            rc, _, err = _run(host, "dpkg --compare-versions %s ge %s", installed, self.fixed)
            if rc not in (0, 1):
                yield cid, "error", f"dpkg --compare-versions failed (rc {rc}): {err.strip()}"
                return
            newer = rc == 0
        elif host.exists("rpm"):
            rc, out, err = _run(
                host, "rpm -q --qf '%%{EPOCH}:%%{VERSION}-%%{RELEASE}\\n' %s", self.name
            )
            if rc != 0 or not out.strip():
                yield (
                    cid,
                    "fail",
                    f"{self.name} not installed (fixed {self.fixed}){self._advisory()}",
                )
                return
            installed = out.strip().splitlines()[0].removeprefix("(none):")
            cmp = self._rpm_compare(host, installed)
            if cmp is None:
                yield (
                    cid,
                    "error",
                    "cannot compare rpm versions (no rpmdev-vercmp, rpm --eval failed)",
                )
                return
            newer = cmp >= 0
        else:
            yield cid, "error", "no dpkg-query or rpm on the host: cannot read package versions"
            return
        if newer:
            yield cid, "pass", f"{self.name} {installed} >= fixed {self.fixed}{self._advisory()}"
        else:
            yield cid, "fail", f"{self.name} {installed} < fixed {self.fixed}{self._advisory()}"

    def _rpm_compare(self, host: Any, installed: str) -> int | None:
        if host.exists("rpmdev-vercmp"):
            rc, _, _ = _run(host, "rpmdev-vercmp %s %s", installed, self.fixed)
            if rc in (0, 11, 12):
                return {0: 0, 11: 1, 12: -1}[rc]
        expr = f'%{{lua: print(rpm.vercmp("{installed}", "{self.fixed}"))}}'
        rc, out, _ = _run(host, "rpm --eval %s", expr)
        if rc == 0 and out.strip().lstrip("-").isdigit():
            return int(out.strip())
        return None


_STALE_SCAN = r"""
n=0
for d in /proc/[0-9]*; do
  p=${d#/proc/}
  [ "$p" = "$$" ] && continue
  [ -r "$d/maps" ] || continue
  n=$((n+1))
  m=$(grep -F '(deleted)' "$d/maps" 2>/dev/null) || continue
  c=$(cat "$d/comm" 2>/dev/null)
  g=$(tr '\n' ' ' < "$d/cgroup" 2>/dev/null)
  printf '%s\n' "$m" | while IFS= read -r l; do printf '%s\t%s\t%s\t%s\n' "$p" "$c" "$g" "$l"; done
done
echo "SCANNED $n"
"""


class StaleProcessesCheck(BaseCheck):
    """No process maps a deleted library or executable (it still runs unpatched code)."""

    kind: Literal["stale-processes"]
    prefixes: list[str] = Field(default_factory=lambda: list(DEFAULT_STALE_PREFIXES))
    ignore: list[str] = Field(default_factory=lambda: list(DEFAULT_STALE_IGNORE))

    def outcomes(self, host: Any, target: ProbeTarget) -> Iterable[Outcome]:
        cid = self.primary_id()
        rc, out, err = _run(host, "sh -c %s", _STALE_SCAN)
        m = re.search(r"^SCANNED (\d+)$", out, re.M)
        if rc != 0 or m is None or int(m.group(1)) == 0:
            yield cid, "error", f"could not scan /proc/*/maps (rc {rc}): {err.strip()[:200]}"
            return
        stale = parse_stale_scan(out, self.prefixes, self.ignore)
        if stale:
            shown = "; ".join(s.describe() for s in stale[:20])
            more = f" (+{len(stale) - 20} more)" if len(stale) > 20 else ""
            yield cid, "fail", f"{len(stale)} stale mapping(s): {shown}{more}"
        else:
            yield cid, "pass", f"no process maps a deleted file ({m.group(1)} processes scanned)"


class RebootPendingCheck(BaseCheck):
    kind: Literal["reboot-pending"]

    def outcomes(self, host: Any, target: ProbeTarget) -> Iterable[Outcome]:
        cid = self.primary_id()
        rc, out, _ = _run(
            host,
            "if [ -e /var/run/reboot-required ]; then echo REQUIRED;"
            " cat /var/run/reboot-required.pkgs 2>/dev/null; fi",
        )
        if rc != 0:
            yield cid, "error", f"cannot test /var/run/reboot-required (rc {rc})"
            return
        if out.startswith("REQUIRED"):
            pkgs = " ".join(out.split()[1:])
            yield cid, "fail", "/var/run/reboot-required exists" + (f" ({pkgs})" if pkgs else "")
            return
        rc, running, _ = _run(host, "uname -r")
        rc2, newest, _ = _run(
            host,
            "ls -1 /boot/vmlinuz-* 2>/dev/null | sed 's|^/boot/vmlinuz-||' | sort -V | tail -n 1",
        )
        running, newest = running.strip(), newest.strip()
        if rc != 0 or not running:
            yield cid, "error", "cannot read the running kernel (uname -r)"
        elif not newest:
            yield (
                cid,
                "pass",
                f"no reboot-required flag; kernel {running} (installed kernels not detectable)",
            )
        elif newest != running:
            yield cid, "fail", f"running kernel {running} but newest installed is {newest}"
        else:
            yield cid, "pass", f"no reboot-required flag; running newest kernel {running}"


class FileCheck(BaseCheck):
    kind: Literal["file"]
    path: str
    exists: bool = True
    mode: int | None = None
    owner: str | None = None
    group: str | None = None
    content_regex: str | None = None

    @field_validator("mode", mode="before")
    @classmethod
    def _mode(cls, v: object) -> object:
        if isinstance(v, str):
            return int(v.removeprefix("0o"), 8)
        return v

    def primary_id(self) -> str:
        return self._single_id(self.path)

    def outcomes(self, host: Any, target: ProbeTarget) -> Iterable[Outcome]:
        cid = self.primary_id()
        f = host.file(self.path)
        exists = bool(f.exists)
        if not exists:
            status: Status = "pass" if not self.exists else "fail"
            yield cid, status, f"{self.path} does not exist"
            return
        if not self.exists:
            yield cid, "fail", f"{self.path} exists but must not"
            return
        problems: list[str] = []
        facts: list[str] = []
        if self.mode is not None:
            mode = int(f.mode)
            facts.append(f"mode {mode:04o}")
            if mode != self.mode:
                problems.append(f"mode {mode:04o} != {self.mode:04o}")
        if self.owner is not None:
            owner = str(f.user)
            facts.append(f"owner {owner}")
            if owner != self.owner:
                problems.append(f"owner {owner} != {self.owner}")
        if self.group is not None:
            group = str(f.group)
            facts.append(f"group {group}")
            if group != self.group:
                problems.append(f"group {group} != {self.group}")
        if self.content_regex is not None:
            content = str(f.content_string)
            if not re.search(self.content_regex, content, re.M):
                problems.append(f"content does not match /{self.content_regex}/")
            else:
                facts.append(f"content matches /{self.content_regex}/")
        if problems:
            yield cid, "fail", f"{self.path}: " + "; ".join(problems)
        else:
            yield cid, "pass", f"{self.path}: " + (", ".join(facts) or "exists")


class SshdCheck(BaseCheck):
    """Effective sshd settings from `sshd -T` (what sshd really uses, after Includes)."""

    kind: Literal["sshd"]
    settings: dict[str, str]
    config: str | None = None

    @field_validator("settings", mode="before")
    @classmethod
    def _lower(cls, v: object) -> object:
        if isinstance(v, dict):
            return {str(k).lower(): _bool_word(val) for k, val in v.items()}
        return v

    def outcomes(self, host: Any, target: ProbeTarget) -> Iterable[Outcome]:
        sshd = host.find_command("sshd")
        if self.config:
            rc, out, err = _run(host, "%s -T -f %s", sshd, self.config)
        else:
            rc, out, err = _run(host, "%s -T", sshd)
        if rc != 0 or not out.strip():
            yield self.primary_id(), "error", f"sshd -T failed (rc {rc}): {err.strip()[:200]}"
            return
        effective = parse_sshd_t(out)
        for key, want in self.settings.items():
            cid = self.check_id(key)
            values = effective.get(key)
            if values is None:
                yield cid, "fail", f"{key} not in sshd -T output (want {want})"
            elif _norm(want) in {_norm(v) for v in values}:
                yield cid, "pass", f"{key} {' | '.join(values)}"
            else:
                yield cid, "fail", f"{key} is {' | '.join(values)}, want {want}"


def _bool_word(v: object) -> str:
    # YAML turns `no`/`yes` into booleans; sshd -T prints words.
    if isinstance(v, bool):
        return "yes" if v else "no"
    return str(v)


class SysctlCheck(BaseCheck):
    kind: Literal["sysctl"]
    values: dict[str, str]

    @field_validator("values", mode="before")
    @classmethod
    def _strings(cls, v: object) -> object:
        if isinstance(v, dict):
            return {str(k): str(int(val) if isinstance(val, bool) else val) for k, val in v.items()}
        return v

    def outcomes(self, host: Any, target: ProbeTarget) -> Iterable[Outcome]:
        for key, want in self.values.items():
            cid = self.check_id(key)
            if not re.fullmatch(r"[A-Za-z0-9_.\-]+", key):
                yield cid, "error", f"invalid sysctl key {key!r}"
                continue
            rc, out, err = _run(host, "cat %s", "/proc/sys/" + key.replace(".", "/"))
            if rc != 0:
                yield cid, "fail", f"cannot read {key}: {err.strip()}"
            elif _norm(out) == _norm(want):
                yield cid, "pass", f"{key} = {out.strip()}"
            else:
                yield cid, "fail", f"{key} = {out.strip()}, want {want}"


class CommandCheck(BaseCheck):
    kind: Literal["command"]
    argv: list[str] = Field(min_length=1)
    expect_rc: int = 0
    stdout_regex: str | None = None
    timeout_s: float | None = None

    def primary_id(self) -> str:
        return self._single_id(self.argv[0])

    def outcomes(self, host: Any, target: ProbeTarget) -> Iterable[Outcome]:
        cmd = shlex.join(self.argv)
        out = host.backend.run_command(cmd, timeout=self.timeout_s)
        problems: list[str] = []
        if out.rc != self.expect_rc:
            problems.append(f"exit {out.rc} != {self.expect_rc}")
        if self.stdout_regex is not None and not re.search(self.stdout_regex, out.stdout, re.M):
            problems.append(f"stdout does not match /{self.stdout_regex}/")
        tail = (out.stdout.strip() or out.stderr.strip())[-300:]
        if problems:
            yield self.primary_id(), "fail", f"{cmd}: " + "; ".join(problems) + f": {tail}"
        else:
            yield self.primary_id(), "pass", f"{cmd}: exit {out.rc}" + (f": {tail}" if tail else "")


Check = Annotated[
    HttpCheck
    | ServiceCheck
    | ListeningCheck
    | PackageCheck
    | StaleProcessesCheck
    | RebootPendingCheck
    | FileCheck
    | SshdCheck
    | SysctlCheck
    | CommandCheck,
    Field(discriminator="kind"),
]

_CHECKS: TypeAdapter[list[Check]] = TypeAdapter(list[Check])


def parse_checks(data: object, *, source: str = "checks") -> list[Check]:
    """Validate a list of check mappings (from YAML); bad input names the field and fix."""
    try:
        return _CHECKS.validate_python(data)
    except ValidationError as exc:
        lines = []
        for e in exc.errors():
            where = ".".join(str(p) for p in e["loc"])
            lines.append(f"{source}[{where}]: {e['msg']}")
        raise BadInput(
            "invalid probe checks:\n  " + "\n  ".join(lines),
            hint="see the check shapes in orchestrator/probes/checks.py",
        ) from exc
