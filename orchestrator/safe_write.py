"""Writing a file safely: the one way bluegreen writes reports, baselines, config
snapshots and schedule units.

`write_file(path, data)`: a temporary file with an unpredictable name is created in the
target's directory with O_EXCL|O_NOFOLLOW (a planted file or symlink there is never opened),
written, given its mode through the descriptor (never chmod through a path), fsynced, and
renamed over the target; then the directory is fsynced. Readers see the old file or the
new one, never half of one. A target that is a symlink (or a directory, FIFO, device) is
refused with `UnsafePath` naming it; rename replaces a directory entry and never writes
through a link, so nothing outside the target directory changes, even if a link appears
between the check and the rename. Stdlib only.
"""

from __future__ import annotations

import os
import secrets
import stat
from pathlib import Path

from orchestrator.errors import BadInput

_ATTEMPTS = 5


class UnsafePath(BadInput):
    """The target of a write is a symlink or not a regular file: refused, nothing written."""


def write_file(
    path: Path, data: str | bytes, *, mode: int = 0o600, make_parents: bool = False
) -> Path:
    """Replace `path` with `data` (text is UTF-8) atomically, with permissions `mode`.

    `make_parents`: create missing directories (0700). Raises `UnsafePath` for a target
    that is a symlink or not a regular file, `OSError` for what the filesystem refuses."""
    body = data.encode("utf-8") if isinstance(data, str) else data
    if make_parents:
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    dir_fd = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        _refuse_unsafe_target(path, dir_fd)
        tmp_name, fd = _create_temp(path, dir_fd, mode)
        try:
            with os.fdopen(fd, "wb") as fh:
                fh.write(body)
                fh.flush()
                os.fchmod(fh.fileno(), mode)  # the descriptor: never through a path
                os.fsync(fh.fileno())
            os.rename(tmp_name, path.name, src_dir_fd=dir_fd, dst_dir_fd=dir_fd)
        except BaseException:
            try:
                os.unlink(tmp_name, dir_fd=dir_fd)
            except FileNotFoundError:
                pass
            raise
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)
    return path


def _refuse_unsafe_target(path: Path, dir_fd: int) -> None:
    try:
        st = os.lstat(path.name, dir_fd=dir_fd)
    except FileNotFoundError:
        return
    if stat.S_ISLNK(st.st_mode):
        try:
            where = f" (to {os.readlink(path.name, dir_fd=dir_fd)})"
        except OSError:
            where = ""
        raise UnsafePath(
            f"refusing to write {path}: it is a symbolic link{where}",
            hint="remove the link, or write to another path; bluegreen never writes through "
            "a link",
        )
    if not stat.S_ISREG(st.st_mode):
        raise UnsafePath(f"refusing to write {path}: it exists and is not a regular file",
                         hint="choose another path")


def _create_temp(path: Path, dir_fd: int, mode: int) -> tuple[str, int]:
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
    for _ in range(_ATTEMPTS):
        name = temp_name(path.name)
        try:
            return name, os.open(name, flags, mode & 0o600, dir_fd=dir_fd)
        except FileExistsError:
            continue  # planted or left over: never opened, try another name
    raise UnsafePath(
        f"cannot create a temporary file for {path}: {_ATTEMPTS} random names in "
        f"{path.parent} were all taken",
        hint=f"look for files planted in {path.parent} (names starting with .{path.name}.)",
    )


def temp_name(name: str) -> str:
    """The temporary name for writing `name`: hidden, unpredictable."""
    return f".{name}.{secrets.token_hex(8)}.tmp"
