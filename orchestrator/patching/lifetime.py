"""A patch run's ansible-playbook never outlives the run that started it.

ansible-runner polls the run's `cancel_callback` and, when it says so, kills the playbook's
process group and waits for it. But an exception raised by a callback (the cancel check reads
the state store, which may have lost its session; a progress display may fail) or by a signal
leaves `Runner.run()` at once with the playbook still running: it went on patching for minutes
while bluegreen had exited. So:

- `Guarded` wraps the callbacks: an exception (any, also KeyboardInterrupt) is kept and turned
  into a cancel, so the runner itself kills the playbook and waits; the caller re-raises it
  after the run has ended (`Guarded.raise_kept`);
- `leashed` starts ansible-playbook under `leash.py`, which dies with bluegreen (the kernel's
  parent-death signal, also after a kill -9) and takes the playbook's process group with it;
- `end_group` kills and waits for that group when anything still escapes `Runner.run()`.
"""

from __future__ import annotations

import os
import signal
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

__all__ = ["LEASH", "PIDFILE", "Guarded", "end_group", "group_members", "leashed"]

LEASH = Path(__file__).with_name("leash.py")
PIDFILE = "leash.pid"
_END_WAIT = 30.0


class Guarded:
    """The runner's cancel and event callbacks; never raise into ansible-runner."""

    def __init__(self, cancel: Callable[[], bool],
                 on_event: Callable[[Mapping[str, Any]], bool]) -> None:
        self._cancel = cancel
        self._on_event = on_event
        self.kept: BaseException | None = None

    def cancel(self) -> bool:
        if self.kept is not None:
            return True
        try:
            return bool(self._cancel())
        except BaseException as exc:  # noqa: BLE001 - kept, raised once the playbook ended
            self.kept = exc
            return True

    def event(self, data: Mapping[str, Any]) -> bool:
        if self.kept is None:
            try:
                return self._on_event(data)
            except BaseException as exc:  # noqa: BLE001 - kept; the next poll cancels
                self.kept = exc
        return True

    def raise_kept(self) -> None:
        if self.kept is not None:
            raise self.kept


def leashed(command: Sequence[str], pidfile: Path) -> list[str]:
    """`command` run under leash.py, which dies with this process (see leash.py)."""
    return [sys.executable, "-I", "-S", str(LEASH), str(os.getpid()), str(pidfile), "--",
            *command]


def group_members(pgid: int) -> list[int]:
    """The processes of group `pgid` that still run (zombies do not)."""
    found: list[int] = []
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            stat = Path(entry.path, "stat").read_text()
        except OSError:
            continue
        fields = stat[stat.rfind(")") + 2:].split()
        if fields[0] != "Z" and int(fields[2]) == pgid:
            found.append(int(entry.name))
    return found


def end_group(pidfile: Path, *, wait: float = _END_WAIT) -> bool:
    """Kill the leash's process group (the playbook and its workers) if it still runs and
    wait until none of it is left. False: something still ran after `wait` seconds."""
    try:
        pgid = int(pidfile.read_text())
    except (OSError, ValueError):
        return True  # the leash never started
    if not group_members(pgid):
        return True
    try:
        os.killpg(pgid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    deadline = time.monotonic() + wait
    while True:  # zombies do not count: pexpect reaps the leash, init the rest
        if not group_members(pgid):
            return True
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)

