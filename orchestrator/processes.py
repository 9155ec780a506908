"""Child processes, stdlib only (the state store and the command router import it): run a
command with a timeout, and tell whether a process id is alive.

`run()` is the one way bluegreen runs a command it waits for: an argv list (never a shell),
stdin closed unless input is given, text decoded with replacement, and its own session, so
that on a timeout (or Ctrl-C) the whole process group is killed: a script's children
(ssh, curl, ...) cannot outlive it or hold our pipes open.
"""

from __future__ import annotations

import os
import signal
import subprocess
from collections.abc import Mapping, Sequence
from pathlib import Path

_REAP_SECONDS = 2.0  # after SIGKILL: how long to collect what the group wrote


def run(
    argv: Sequence[str],
    *,
    timeout: float,
    input_text: str | None = None,
    cwd: Path | str | None = None,
    env: Mapping[str, str] | None = None,
    merge_stderr: bool = False,
) -> subprocess.CompletedProcess[str]:
    """Run `argv` to completion; its exit code is the caller's to judge.

    Raises `subprocess.TimeoutExpired` (with what the command wrote to stderr, or stdout
    when merged) after killing its process group, and `OSError` (FileNotFoundError,
    PermissionError) when it cannot be started. `merge_stderr` puts stderr into stdout."""
    args = list(argv)
    with subprocess.Popen(
        args,
        stdin=subprocess.PIPE if input_text is not None else subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT if merge_stderr else subprocess.PIPE,
        text=True,
        errors="replace",
        cwd=cwd,
        env=None if env is None else dict(env),
        start_new_session=True,
    ) as process:
        try:
            stdout, stderr = process.communicate(input_text, timeout=timeout)
        except subprocess.TimeoutExpired as exc:
            _kill_group(process)
            try:
                out, err = process.communicate(timeout=_REAP_SECONDS)
            except subprocess.TimeoutExpired:
                out, err = "", ""
            raise subprocess.TimeoutExpired(
                args, timeout, output=out, stderr=out if merge_stderr else err
            ) from exc
        except BaseException:
            _kill_group(process)
            raise
    return subprocess.CompletedProcess(args, process.returncode, stdout, stderr or "")


def _kill_group(process: subprocess.Popen[str]) -> None:
    # The group is the one `run` created for the command (start_new_session).
    try:
        os.killpg(process.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    process.kill()


def alive(pid: int) -> bool:
    """True if `pid` runs (also as another user's process); a zombie is not alive."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        return stat.rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return False
