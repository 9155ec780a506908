"""The keyed marker: outside the state store, the fact that a chain is keyed, and from which
record on. Whoever can write the database but not the key's directory cannot strip the MACs
and pass the chain off as "not keyed yet" (a downgrade): the marker says otherwise.

The marker is a small append-only file beside the audit key (`audit.key.keyed` for
`audit.key`), one line per chain the key was put to use for:

    keyed key=K from=S after=H store=LABEL at=T

`from`: the first keyed record (1 for a chain keyed from its start; N+1 when the key was
created for a chain of N records written before keys, whose head hash `after` then pins
them). It is written when the key is created for a chain, when an existing key starts a new
chain, and, once, when a chain keyed before markers existed is first extended (trust on
first use: that chain's first keyed record, as the database holds it then). The newest line
for a store and key counts. The same point is in every witness line (`keyed=S`), so a team
machine whose own copy of the key has no marker yet still has the collector's word.

A marker file that is a symlink, not ours, or writable by group or others is refused
(`StateError`, as for the key). When the key's directory is not writable the marker cannot
be written; bluegreen goes on without it (the rule "a key exists, so an unkeyed chain is
forged" still holds). Stdlib only (the rollback path reads it).
"""

from __future__ import annotations

import os
import re
import stat
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import quote, unquote

from orchestrator.errors import StateError
from orchestrator.state.audit import format_ts

_MAX_BYTES = 1024 * 1024
_LINE_RE = re.compile(
    r"^keyed key=(?P<key>[0-9a-f]{16}) from=(?P<from>\d+) after=(?P<after>[0-9a-f]{64}) "
    r"store=(?P<store>\S+) at=(?P<at>\S+)$"
)


@dataclass(frozen=True)
class KeyedPoint:
    """Where the keyed part of a chain begins, as known outside the store."""

    key_id: str
    first_seq: int
    """The first record that must carry a MAC."""
    prefix_hash: str | None
    """The hash of record `first_seq - 1` (the genesis hash when `first_seq` is 1; None
    when a witness line named the point)."""
    source: str
    """Where this was read (the marker file, or a witness)."""


def marker_path(key_file: Path) -> Path:
    return key_file.with_name(key_file.name + ".keyed")


def read_point(key_file: Path, store: str, key_id: str | None = None) -> KeyedPoint | None:
    """The newest marker line for `store` (and `key_id`, when given); None without one.
    StateError for a marker file that is unsafe to trust."""
    path = marker_path(key_file)
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise _error(path, f"cannot be opened: {exc.strerror}") from exc
    with os.fdopen(fd, "rb") as fh:
        _check_owner(path, os.fstat(fh.fileno()))
        data = fh.read(_MAX_BYTES)
    found: KeyedPoint | None = None
    for raw in data.decode("ascii", "replace").splitlines():
        match = _LINE_RE.match(raw.strip())
        if match is None or unquote(match["store"]) != store:
            continue
        if key_id is not None and match["key"] != key_id:
            continue
        found = KeyedPoint(key_id=match["key"], first_seq=int(match["from"]),
                           prefix_hash=match["after"], source=f"keyed marker {path}")
    return found


def record_point(key_file: Path, store: str, key_id: str, first_seq: int,
                 prefix_hash: str) -> KeyedPoint | None:
    """Append a marker line (fsynced); None when the key's directory is not writable (the
    marker is then missing, see the module docstring). StateError for an unsafe file."""
    path = marker_path(key_file)
    line = (f"keyed key={key_id} from={first_seq} after={prefix_hash} "
            f"store={quote(store, safe='/._-~+:@')} at={format_ts(datetime.now(UTC))}\n")
    try:
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC,
                     0o600)
    except (PermissionError, FileNotFoundError):
        return None
    except OSError as exc:
        raise _error(path, f"cannot be opened: {exc.strerror}") from exc
    try:
        _check_owner(path, os.fstat(fd))
        os.write(fd, line.encode("ascii"))
        os.fsync(fd)
    finally:
        os.close(fd)
    return KeyedPoint(key_id=key_id, first_seq=first_seq, prefix_hash=prefix_hash,
                      source=f"keyed marker {path}")


def _check_owner(path: Path, st: os.stat_result) -> None:
    if not stat.S_ISREG(st.st_mode):
        raise _error(path, "is not a regular file")
    if st.st_uid != os.geteuid():
        raise _error(path, f"belongs to uid {st.st_uid}, not to this user ({os.geteuid()})")
    if st.st_mode & 0o022:
        raise _error(path, f"is writable by group or others (mode "
                     f"{stat.S_IMODE(st.st_mode):04o}): a marker others can write proves "
                     "nothing")


def _error(path: Path, what: str) -> StateError:
    return StateError(
        f"audit keyed marker {path} {what}",
        hint=f"it must be a regular file owned by this user, mode 0600, beside the audit key "
        f"(chmod 600 {path}); it records from which record the chain is keyed",
    )
