"""Reading a child process's output with a deadline: a child that hangs before it writes
must fail its test, not hang the whole run (there is no pytest-timeout)."""

from __future__ import annotations

import threading
from typing import IO

import pytest


def read_line(stream: IO[str], timeout: float, what: str) -> str:
    """The next line of `stream` ('' at its end); pytest.fail naming `what` when none came
    within `timeout` seconds. The reader thread ends when the caller kills the process."""
    got: list[str] = []
    reader = threading.Thread(target=lambda: got.append(stream.readline()), daemon=True)
    reader.start()
    reader.join(timeout)
    if reader.is_alive():
        pytest.fail(f"no line from {what} within {timeout:.0f} s", pytrace=False)
    return got[0]
