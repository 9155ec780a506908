"""The audit key: the secret every audit record's HMAC is computed with.

It lives in a file outside the state store (config `audit: {key_file: PATH}`; by default
`audit.key` next to the state database, never inside it), so that whoever can write the
database but cannot read the key cannot forge or re-chain records. The file holds 32
random bytes as 64 hex digits and is created on first use, mode 0600, all-or-nothing: it is
written to a private temporary file and then hard-linked into place, which fails if another
process created the key first (that key is then used).

A key file that is a symlink, not a regular file, owned by someone else, or readable or
writable by group or others is refused: a key others can read proves nothing. Stdlib only
(the rollback path loads it).
"""

from __future__ import annotations

import hashlib
import os
import secrets
import stat
from dataclasses import dataclass, field
from pathlib import Path

from orchestrator.errors import StateError

_KEY_BYTES = 32
_MAX_FILE_BYTES = 4096


@dataclass(frozen=True)
class AuditKey:
    """A loaded key. `key_id` names it in records and witness lines (not secret: it is a
    digest, from which the key cannot be recovered)."""

    path: Path
    secret: bytes = field(repr=False)

    @property
    def key_id(self) -> str:
        return key_id(self.secret)


def key_id(secret: bytes) -> str:
    return hashlib.sha256(b"bluegreen audit key id\0" + secret).hexdigest()[:16]


def load_key(path: Path, *, create: bool) -> AuditKey | None:
    """The key in `path`; created first when missing and `create` is true, else None when
    missing. Raises `StateError` (naming the file and the fix) for an unusable file."""
    try:
        return _read(path)
    except FileNotFoundError:
        if not create:
            return None
    _create(path)
    return _read(path)


def _read(path: Path) -> AuditKey:
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except FileNotFoundError:
        raise
    except OSError as exc:
        raise _error(path, f"cannot be opened: {exc.strerror}",
                     "it must be a regular file (not a symlink) readable by this user") from exc
    with os.fdopen(fd, "rb") as fh:
        st = os.fstat(fh.fileno())
        if not stat.S_ISREG(st.st_mode):
            raise _error(path, "is not a regular file", "point audit.key_file at the key file")
        if st.st_uid != os.geteuid():
            raise _error(path, f"belongs to uid {st.st_uid}, not to this user ({os.geteuid()})",
                         f"run bluegreen as the key's owner, or chown it: chown {os.geteuid()} "
                         f"{path}")
        if st.st_mode & 0o077:
            raise _error(path, f"is accessible by group or others (mode {stat.S_IMODE(st.st_mode):04o});"
                         " a key others can read proves nothing",
                         f"chmod 600 {path} (and consider a new key if others may have read it)")
        text = fh.read(_MAX_FILE_BYTES + 1)
    try:
        secret = bytes.fromhex(text.decode("ascii").strip())
    except (UnicodeDecodeError, ValueError):
        secret = b""
    if len(secret) != _KEY_BYTES:
        raise _error(path, f"is not a bluegreen audit key ({_KEY_BYTES * 2} hex digits)",
                     "restore the key file from its backup; do not create a new one for an "
                     "existing chain (its records would no longer verify)")
    return AuditKey(path=path, secret=secret)


def _create(path: Path) -> None:
    try:
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC,
                     0o600)
        try:
            with os.fdopen(fd, "w", encoding="ascii") as fh:
                fh.write(secrets.token_hex(_KEY_BYTES) + "\n")
                fh.flush()
                os.fsync(fh.fileno())
            try:
                os.link(tmp, path)  # atomic and never replaces: a concurrent creator wins
            except FileExistsError:
                pass
        finally:
            os.unlink(tmp)
        dir_fd = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
    except OSError as exc:
        raise _error(path, f"cannot be created: {exc.strerror}",
                     "make its directory writable by this user, or set audit.key_file") from exc


def _error(path: Path, what: str, hint: str) -> StateError:
    return StateError(f"audit key file {path} {what}", hint=hint)
