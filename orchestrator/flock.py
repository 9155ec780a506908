"""Exclusive `flock` with a deadline: the traffic lock (state store) and the HAProxy map
file's lock (routers). Standard library only (the rollback fast path). The kernel drops
an flock when its holder's file descriptor closes, also when the holder is killed."""

from __future__ import annotations

import fcntl
import time

POLL_S = 0.01


def acquire(fd: int, timeout_s: float) -> bool:
    """Take an exclusive flock on `fd`, polling until `timeout_s`; False if still held."""
    deadline = time.monotonic() + max(0.0, timeout_s)
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return True
        except BlockingIOError:
            if time.monotonic() >= deadline:
                return False
            time.sleep(POLL_S)


def release(fd: int) -> None:
    fcntl.flock(fd, fcntl.LOCK_UN)
