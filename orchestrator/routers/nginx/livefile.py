"""The one file bluegreen owns in nginx's config: one `map` per service naming its live
upstream group. Read, changed for one service, and written atomically under an flock, so
two services flipping at once never lose each other's line. Standard library only."""

from __future__ import annotations

import fcntl
import os
import re
from pathlib import Path

from orchestrator.errors import RouterError

HEADER = "# written by bluegreen (router kind nginx): each service's live upstream; do not edit\n"
LINE = re.compile(r"^map \$host \$bluegreen_([A-Za-z0-9_]+) \{ default ([A-Za-z0-9_.-]+); \}$")


def variable(service: str) -> str:
    """The nginx variable of `service` (`$bluegreen_web`; `-` becomes `_`)."""
    return "bluegreen_" + service.replace("-", "_")


def parse(text: str, path: str) -> dict[str, str]:
    """service variable suffix -> upstream; RouterError for a line bluegreen did not write."""
    entries: dict[str, str] = {}
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip() or line.startswith("#"):
            continue
        match = LINE.match(line)
        if match is None:
            raise RouterError(f"{path}:{number}: not a line bluegreen writes: {line[:120]!r}",
                              hint="this file is bluegreen's own; keep your nginx config "
                              "elsewhere and `include` this file in the http block")
        entries[match.group(1)] = match.group(2)
    return entries


def render(entries: dict[str, str]) -> str:
    return HEADER + "".join(f"map $host $bluegreen_{key} {{ default {upstream}; }}\n"
                            for key, upstream in sorted(entries.items()))


def read(path: str) -> dict[str, str]:
    try:
        text = Path(path).read_text()
    except FileNotFoundError:
        return {}
    except OSError as exc:
        raise RouterError(f"cannot read {path}: {exc.strerror}") from exc
    return parse(text, path)


class Locked:
    """`with Locked(path) as lock:` holds `path.lock` (flock); `lock.write(text)` replaces
    `path` atomically (temporary file, fsync, rename)."""

    def __init__(self, path: str) -> None:
        self.path = path
        self._fd = -1

    def __enter__(self) -> Locked:
        try:
            self._fd = os.open(self.path + ".lock",
                               os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
        except OSError as exc:
            raise RouterError(f"cannot open the lock {self.path}.lock: {exc.strerror}",
                              hint="bluegreen needs write access to the live file's directory"
                              ) from exc
        fcntl.flock(self._fd, fcntl.LOCK_EX)
        return self

    def __exit__(self, *exc: object) -> None:
        os.close(self._fd)

    def write(self, text: str) -> None:
        directory = os.path.dirname(self.path) or "."
        tmp = os.path.join(directory, f".{os.path.basename(self.path)}.{os.getpid()}.tmp")
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o644)
            try:
                os.write(fd, text.encode())
                os.fsync(fd)
            finally:
                os.close(fd)
            os.replace(tmp, self.path)
            dir_fd = os.open(directory, os.O_RDONLY)
            try:
                os.fsync(dir_fd)
            finally:
                os.close(dir_fd)
        except OSError as exc:
            try:
                os.unlink(tmp)
            except OSError:
                pass
            raise RouterError(f"cannot write {self.path}: {exc.strerror}") from exc
