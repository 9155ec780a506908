"""ansible-playbook on a leash: `python -I -S leash.py PARENT PIDFILE -- COMMAND...`.

ansible-runner starts this script instead of ansible-playbook (see `lifetime.leashed`). It
runs COMMAND as its child and dies with bluegreen: it asks the kernel for SIGTERM when its
parent dies (PR_SET_PDEATHSIG, which also covers a kill -9 of bluegreen) and then kills its
whole process group (ansible-playbook and its forked workers; ansible-runner started this
script as a session and group leader). It writes its pid to PIDFILE first, so bluegreen can
end the group itself when a run stops abnormally.

Standalone on purpose: standard library only (it runs with `-I -S`, before any site
packages), no import of bluegreen.
"""

from __future__ import annotations

import ctypes
import os
import signal
import sys
from types import FrameType

PR_SET_PDEATHSIG = 1


def _end_group(signum: int = 0, frame: FrameType | None = None) -> None:
    os.killpg(0, signal.SIGKILL)  # the playbook, its workers and this process


def _exit_like(status: int) -> None:
    if os.WIFSIGNALED(status):
        sig = os.WTERMSIG(status)
        signal.signal(sig, signal.SIG_DFL)
        os.kill(os.getpid(), sig)
    os._exit(os.waitstatus_to_exitcode(status) if os.WIFEXITED(status) else 1)


def main(argv: list[str]) -> None:
    if len(argv) < 5 or argv[3] != "--":
        sys.stderr.write("usage: leash.py PARENT PIDFILE -- COMMAND...\n")
        os._exit(2)
    parent, pidfile, command = int(argv[1]), argv[2], argv[4:]
    if os.getpgrp() != os.getpid():
        os.setpgid(0, 0)  # never kill a group that is not ours
    signal.signal(signal.SIGTERM, _end_group)
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0) != 0:
        sys.stderr.write(f"bluegreen leash: prctl failed: {os.strerror(ctypes.get_errno())}\n")
        os._exit(126)
    if os.getppid() != parent:  # bluegreen died before the signal was asked for
        _end_group()
    with open(pidfile, "w", encoding="ascii") as f:
        f.write(str(os.getpid()))
    pid = os.fork()
    if pid == 0:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)  # the leash itself killed
        try:
            os.execvp(command[0], command)
        except OSError as exc:
            sys.stderr.write(f"bluegreen leash: cannot run {command[0]}: {exc}\n")
        os._exit(127)
    _, status = os.waitpid(pid, 0)
    _exit_like(status)


if __name__ == "__main__":
    main(sys.argv)
