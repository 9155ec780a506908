"""The SQLite file: created 0600 in a 0700 directory, opened in WAL mode with full
synchronous commits, its errors turned into `StateError`s that name the file and a fix;
its audit head read without opening a store; where its audit key lives by default."""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from urllib.parse import quote

from orchestrator.errors import StateError
from orchestrator.state.audit import AuditHead


def connect(path: Path, busy_timeout_ms: int) -> sqlite3.Connection:
    """A connection in autocommit mode (transactions are explicit), rows by column name."""
    try:
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600)
        os.close(fd)
    except FileExistsError:
        pass
    except OSError as exc:
        raise StateError(
            f"cannot create the state database {path}: {exc.strerror}",
            hint="make its directory writable by this user, or set state.path elsewhere",
        ) from exc
    # SQLite gives -wal/-shm the database file's permissions (0600): no umask is set here,
    # since the umask is the whole process's and another thread may be creating files
    with translate(path, busy_timeout_ms):
        conn = sqlite3.connect(path, timeout=busy_timeout_ms / 1000, isolation_level=None)
        try:
            conn.row_factory = sqlite3.Row
            conn.execute(f"PRAGMA busy_timeout = {int(busy_timeout_ms)}")
            mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
            if str(mode).lower() != "wal":
                raise StateError(
                    f"state database {path} cannot use WAL mode (got {mode!r})",
                    hint="put the state file on a local filesystem (not NFS/SMB)",
                )
            conn.execute("PRAGMA foreign_keys = ON")
            conn.execute("PRAGMA synchronous = FULL")
        except BaseException:
            conn.close()
            raise
    return conn


def tighten_sidecar_files(path: Path) -> None:
    for suffix in ("-wal", "-shm"):
        with suppress(FileNotFoundError):
            os.chmod(f"{path}{suffix}", 0o600)


@contextmanager
def translate(path: Path, busy_timeout_ms: int) -> Iterator[None]:
    """Turn sqlite3 errors into StateError naming the file and a fix."""
    try:
        yield
    except sqlite3.Error as exc:
        raise state_error(path, busy_timeout_ms, exc) from exc


def state_error(path: Path, busy_timeout_ms: int, exc: sqlite3.Error) -> StateError:
    text = str(exc)
    low = text.lower()
    hint: str | None
    if "locked" in low or "busy" in low:
        hint = (
            f"another process is writing {path}; retry when it is done (waited "
            f"{busy_timeout_ms} ms; raise the busy timeout if this is frequent)"
        )
    elif "disk i/o" in low:
        hint = f"the filesystem holding {path} reported an I/O error; check the disk"
    elif "full" in low:
        hint = f"free space on the filesystem holding {path}, then retry"
    elif "readonly" in low or "read-only" in low or "unable to open" in low:
        hint = f"make {path} and its directory readable and writable by this user"
    elif "not a database" in low or "malformed" in low:
        hint = "the file is not a bluegreen state database or is corrupt; restore a backup"
    else:
        hint = None
    return StateError(f"state database {path}: {text}", hint=hint)


def read_head(path: Path) -> AuditHead | None:
    """The stored audit head of the database at `path`, read only (the file is never
    created: mode=rw opens an existing one, whose -wal/-shm it cleans up on close);
    None when there is no readable database there."""
    try:
        conn = sqlite3.connect(f"file:{quote(str(path))}?mode=rw", uri=True, timeout=5.0)
    except sqlite3.Error:
        return None
    try:
        row = conn.execute("SELECT count, head_hash, key_id FROM audit_head WHERE id = 1"
                           ).fetchone()
    except sqlite3.Error:
        return None
    finally:
        conn.close()
    if row is None:
        return None
    return AuditHead(count=int(row[0]), head_hash=str(row[1]), key_id=row[2])


def default_key_file(state_path: Path) -> Path:
    """Where the audit key lives unless the config says otherwise: beside the database
    file, never inside it."""
    return state_path.with_name("audit.key")
