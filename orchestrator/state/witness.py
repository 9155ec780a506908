"""Witnesses: the audit chain's head, written outside the state store after every command
that appended records, so that a truncated chain, a rewritten head or an older copy of the
database is seen by `bluegreen audit verify`.

Witnesses (config `audit: {witness: ...}`):
- syslog, identifier `bluegreen`: the local socket (`/dev/log`) when there is one, or a
  remote collector over TCP (RFC 5424 messages, octet-counting framing, RFC 6587). A
  collector on another machine is the witness an attacker on the orchestrator cannot edit.
  `syslog_copy`: a file the collector writes that this machine can read (for verify).
- an append-only file (opened O_APPEND, never rewritten; best on another filesystem, with
  `chattr +a`).

One line per head: `audit head seq=N hash=H key=K keyed=S store=PATH at=T host=NAME`
(`keyed=S`: the chain is keyed from record S on, as the keyed marker beside the key says;
`-` when not known; lines written before markers have no `keyed=`). A witness
that is missing or unreachable is reported (`WitnessResult.ok` false, with why), never
raised: it must not fail a rollback. Sending waits at most `timeout_s` per witness.
Stdlib only (the rollback path publishes).
"""

from __future__ import annotations

import os
import re
import socket
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import quote, unquote

from orchestrator.state.audit import AuditHead, format_ts
from orchestrator.state.audit_settings import WitnessSettings
from orchestrator.state.audit_verify import WitnessHead
from orchestrator.state.registry import StateLocation

LOCAL_SOCKET = Path("/dev/log")
APP_NAME = "bluegreen"
_FACILITY_AUTH = 4
_SEVERITY_NOTICE = 5
_PRI = _FACILITY_AUTH * 8 + _SEVERITY_NOTICE
_SD_ID = "bluegreen@32473"  # 32473: the enterprise number RFC 5612 reserves for examples
_MAX_READ_BYTES = 64 * 1024 * 1024
_LINE_RE = re.compile(
    r"audit head seq=(?P<seq>\d+) hash=(?P<hash>[0-9a-f]{64}) key=(?P<key>[0-9a-f]{16}) "
    r"(?:keyed=(?P<keyed>\d+|-) )?store=(?P<store>\S+) at=(?P<at>\S+)"
)


@dataclass(frozen=True)
class WitnessResult:
    """What one witness did with a head: `ok`, or why not (`detail`)."""

    witness: str
    ok: bool
    detail: str | None = None

    def as_json(self) -> dict[str, object]:
        return {"witness": self.witness, "ok": self.ok, "detail": self.detail}


def head_line(head: AuditHead, store: str | Path, at: datetime | None = None,
              keyed_from: int | None = None) -> str:
    when = format_ts(at or datetime.now(UTC))
    return (f"audit head seq={head.count} hash={head.head_hash} key={head.key_id or '-' * 16} "
            f"keyed={keyed_from or '-'} store={quote(str(store), safe='/._-~+')} at={when} "
            f"host={socket.gethostname()}")


def publish(head: AuditHead, store: str | Path, settings: WitnessSettings,
            keyed_from: int | None = None) -> list[WitnessResult]:
    """Write `head` of the chain in `store` (keyed from record `keyed_from`) to every
    configured witness. Never raises for a witness that fails; says why in its result. No
    witness configured: one failed result."""
    line = head_line(head, store, keyed_from=keyed_from)
    results: list[WitnessResult] = []
    if settings.syslog != "off":
        results.append(_to_syslog(line, head, store, settings))
    if settings.file is not None:
        results.append(_to_file(line, settings.file))
    if not results:
        results.append(WitnessResult("none", False, "no witness is configured (audit.witness):"
                                     " the head is kept only inside the store"))
    return results


def _to_syslog(line: str, head: AuditHead, store: str | Path,
               settings: WitnessSettings) -> WitnessResult:
    target = settings.syslog
    if target == "local":
        name = f"syslog {LOCAL_SOCKET}"
        if not LOCAL_SOCKET.exists():
            return WitnessResult(name, False, f"no local syslog socket ({LOCAL_SOCKET}); set "
                                 "audit.witness.syslog to tcp://COLLECTOR:PORT (or a file "
                                 "witness)")
        message = f"<{_PRI}>{datetime.now().strftime('%b %d %H:%M:%S')} {APP_NAME}" \
                  f"[{os.getpid()}]: {line}"
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
                sock.settimeout(settings.timeout_s)
                sock.connect(str(LOCAL_SOCKET))
                sock.send(message.encode("utf-8", "replace"))
        except OSError as exc:
            return WitnessResult(name, False, f"cannot send to {LOCAL_SOCKET}: {exc}")
        return WitnessResult(name, True)
    name = f"syslog {target}"
    try:
        host, port = parse_tcp_address(target)
    except ValueError as exc:
        return WitnessResult(name, False, str(exc))
    frame = rfc5424(line, head, store).encode("utf-8", "replace")
    try:
        with socket.create_connection((host, port), timeout=settings.timeout_s) as sock:
            sock.settimeout(settings.timeout_s)
            sock.sendall(str(len(frame)).encode() + b" " + frame)
    except OSError as exc:
        return WitnessResult(name, False, f"cannot reach the syslog collector {host}:{port}: "
                             f"{exc.strerror or exc}")
    return WitnessResult(name, True)


def rfc5424(line: str, head: AuditHead, store: str | Path) -> str:
    """One RFC 5424 message: header, structured data with the head, the line as MSG."""
    stamp = datetime.now(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")
    host = socket.gethostname() or "-"
    data = (f'[{_SD_ID} seq="{head.count}" hash="{head.head_hash}" '
            f'key="{head.key_id or "-"}" store="{_sd_escape(str(store))}"]')
    return f"<{_PRI}>1 {stamp} {host} {APP_NAME} {os.getpid()} audit-head {data} {line}"


def _sd_escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("]", "\\]")


def parse_tcp_address(text: str) -> tuple[str, int]:
    """("host", port) from tcp://HOST:PORT (IPv6 in brackets); ValueError naming the form."""
    match = re.fullmatch(r"tcp://(\[[0-9a-fA-F:.]+\]|[A-Za-z0-9.-]+):(\d{1,5})", text)
    if not match or not 0 < int(match.group(2)) < 65536:
        raise ValueError(f"{text!r} is not a syslog collector address; use tcp://HOST:PORT, "
                         "`local` or `off`")
    return match.group(1).strip("[]"), int(match.group(2))


def _to_file(line: str, path: Path) -> WitnessResult:
    name = f"file {path}"
    try:
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC,
                     0o600)
        try:
            # one write of one line, no fsync: the incident path must not wait for the disk;
            # a line lost in a crash only leaves the witness behind the store, never ahead
            os.write(fd, (line + "\n").encode("utf-8", "replace"))
        finally:
            os.close(fd)
    except OSError as exc:
        return WitnessResult(name, False, f"cannot append to {path}: {exc.strerror or exc}")
    return WitnessResult(name, True)


# -- reading back, for `audit verify` ------------------------------------------------------


@dataclass(frozen=True)
class Witnessed:
    """The heads found in the readable witnesses, for one store and key."""

    heads: list[WitnessHead]
    sources: list[str]
    warnings: list[str]


def read_witnessed(settings: WitnessSettings, store: str | Path,
                   key_id: str | None) -> Witnessed:
    """Every head written for `store` (and, when known, `key_id`) in the append-only file
    and in the collector's readable copy."""
    heads: list[WitnessHead] = []
    sources: list[str] = []
    warnings: list[str] = []
    files = [(f"witness file {settings.file}", settings.file),
             (f"syslog copy {settings.syslog_copy}", settings.syslog_copy)]
    for label, path in files:
        if path is None:
            continue
        try:
            found = _heads_in(path, label, store, key_id)
        except OSError as exc:
            warnings.append(f"{label} cannot be read: {exc.strerror or exc}")
            continue
        sources.append(label)
        if not found:
            warnings.append(f"{label} has no head of this chain ({store})")
        heads += found
    return Witnessed(heads, sources, warnings)


def _heads_in(path: Path, label: str, store: str | Path,
              key_id: str | None) -> list[WitnessHead]:
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    with os.fdopen(fd, "rb") as fh:
        data = fh.read(_MAX_READ_BYTES)
    wanted = str(store)
    out = []
    for raw in data.decode("utf-8", "replace").splitlines():
        if APP_NAME not in raw and not raw.startswith("audit head"):
            continue
        match = _LINE_RE.search(raw)
        if not match or unquote(match["store"]) != wanted:
            continue
        if key_id is not None and match["key"] != key_id:
            continue
        keyed = match["keyed"]
        out.append(WitnessHead(seq=int(match["seq"]), hash=match["hash"], source=label,
                               at=match["at"],
                               keyed_from=int(keyed) if keyed and keyed != "-" else None))
    return out


def parse_expected_head(text: str) -> WitnessHead:
    """`--expect-head SEQ:HASH` as a witnessed head; ValueError naming the form."""
    match = re.fullmatch(r"(\d+):([0-9a-f]{64})", text.strip())
    if not match:
        raise ValueError(f"--expect-head {text!r}: use SEQ:HASH, e.g. 42:<64 hex digits> "
                         "(as `bluegreen audit verify` and reports print them)")
    return WitnessHead(seq=int(match.group(1)), hash=match.group(2), source="--expect-head")


def summary(results: Sequence[WitnessResult]) -> str | None:
    """One warning line for the failed witnesses, or None when all went well."""
    failed = [r for r in results if not r.ok]
    if not failed:
        return None
    return "audit head not witnessed: " + "; ".join(f"{r.witness}: {r.detail}" for r in failed)


class CommandWitness:
    """The witness of one command: remembers the head when the command starts, and at the
    end publishes the head if records were appended (by this process or any other)."""

    def __init__(self, location: StateLocation, settings: WitnessSettings,
                 key_file: Path | None = None) -> None:
        from orchestrator.state.registry import read_head

        self._read_head = read_head
        self.location = location
        self.settings = settings
        self.key_file = key_file
        """The audit key's file: its keyed marker names the keyed point in each line."""
        self.last = read_head(location)
        self.results: list[WitnessResult] = []

    def publish_if_changed(self) -> list[WitnessResult]:
        """Publish the current head if it moved since the start or the last publish;
        returns the results of this command's publishes so far (empty: nothing to do)."""
        head = self._read_head(self.location)
        if head is None or head == self.last or head.count == 0:
            return self.results
        self.last = head
        self.results = publish(head, self.location.label, self.settings, self._keyed_from(head))
        return self.results

    def _keyed_from(self, head: AuditHead) -> int | None:
        if self.key_file is None or head.key_id is None:
            return None
        from orchestrator.errors import StateError
        from orchestrator.state.audit_marker import read_point

        try:
            point = read_point(self.key_file, self.location.label, head.key_id)
        except StateError:
            return None  # an unsafe marker is refused where it is used; the line goes out
        return point.first_seq if point else None
