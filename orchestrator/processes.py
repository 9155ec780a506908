"""Child processes, stdlib only (the state store and the command router import it): run a
command with a timeout, and tell whether a process id is alive.

`run()` is the one way bluegreen runs a command it waits for: an argv list (never a shell),
stdin closed unless input is given, text decoded with replacement, and its own session, so
that on a timeout (or Ctrl-C) the whole process group is killed: a script's children
(ssh, curl, ...) cannot outlive it or hold our pipes open.

`child_env()` is the one environment bluegreen gives the programs it starts (ansible-runner and
ansible-playbook, every ssh, the command router's script): an allowlist of what they need
(PATH with this Python's `bin/` first, HOME, the user's name, locale, TERM, TZ, TMPDIR,
SSH_AUTH_SOCK), plus what the caller sets itself. Nothing else of bluegreen's environment
(PGPASSWORD, BLUEGREEN_* tokens, anything a colleague's script should not see) is passed on:
ansible-runner writes the environment it is given to disk (`artifacts/*/command`).
"""

from __future__ import annotations

import os
import selectors
import signal
import subprocess
import sys
import time
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import overload

_REAP_SECONDS = 2.0  # after SIGKILL: how long to collect what the group wrote
_READ_CHUNK = 65536

MAX_OUTPUT = 8 * 2**20
"""The default cap on what one command on another machine may answer (stdout and stderr
together, bytes): a compromised host must not fill our memory (see `OutputTooLarge`)."""


def too_large(limit: int) -> str:
    """The one wording of "over the cap", for every remote read."""
    return f"output too large (> {limit / 2**20:g} MB)"


class OutputTooLarge(Exception):
    """A command wrote more than its cap: it was stopped, and what it wrote is dropped
    (never a partial result)."""

    def __init__(self, limit: int) -> None:
        super().__init__(too_large(limit))
        self.limit = limit


#: what a child gets from bluegreen's own environment (when set); LC_* too
CHILD_ENV_NAMES = frozenset(
    {"HOME", "USER", "LOGNAME", "LANG", "LANGUAGE", "TZ", "TERM", "TMPDIR", "SSH_AUTH_SOCK"}
)
_DEFAULT_PATH = "/usr/local/bin:/usr/bin:/bin"


def child_env(
    extra: Mapping[str, str] | None = None,
    *,
    keep: Iterable[str] = (),
    environ: Mapping[str, str] | None = None,
) -> dict[str, str]:
    """The minimal environment of a program bluegreen starts (see the module docstring).

    `extra`: variables the caller sets (they win); `keep`: further names taken from bluegreen's
    environment when set, each one a caller needs by name (e.g. ANSIBLE_CONFIG);
    `environ`: the environment to take them from (default: os.environ)."""
    source = os.environ if environ is None else environ
    wanted = CHILD_ENV_NAMES | set(keep)
    env = {k: v for k, v in source.items() if k in wanted or k.startswith("LC_")}
    bin_dir = str(Path(sys.prefix) / "bin")
    path = [p for p in (source.get("PATH") or _DEFAULT_PATH).split(os.pathsep) if p]
    env["PATH"] = os.pathsep.join([bin_dir, *(p for p in path if p != bin_dir)])
    if extra:
        env.update(extra)
    return env


def run(
    argv: Sequence[str],
    *,
    timeout: float,
    input_text: str | None = None,
    cwd: Path | str | None = None,
    env: Mapping[str, str] | None = None,
    merge_stderr: bool = False,
    max_output: int | None = None,
) -> subprocess.CompletedProcess[str]:
    """Run `argv` to completion; its exit code is the caller's to judge.

    Raises `subprocess.TimeoutExpired` (with what the command wrote to stderr, or stdout
    when merged) after killing its process group, and `OSError` (FileNotFoundError,
    PermissionError) when it cannot be started. `merge_stderr` puts stderr into stdout.
    `max_output` (bytes, stdout and stderr together): past it the process group is killed
    and `OutputTooLarge` raised; it is read in chunks, never kept beyond the cap."""
    args = list(argv)
    if max_output is not None and input_text is not None:
        raise ValueError("max_output is for commands without input")
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
            if max_output is None:
                stdout, stderr = process.communicate(input_text, timeout=timeout)
            else:
                stdout, stderr = _read_capped(process, timeout, max_output)
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


def _read_capped(
    process: subprocess.Popen[str], timeout: float, limit: int
) -> tuple[str, str]:
    """`communicate()` with a cap: both pipes read in chunks until EOF, then the exit."""
    deadline = time.monotonic() + timeout
    got: dict[int, bytearray] = {}
    total = 0
    with selectors.DefaultSelector() as sel:
        for pipe in (process.stdout, process.stderr):
            if pipe is not None:
                got[pipe.fileno()] = bytearray()
                sel.register(pipe.fileno(), selectors.EVENT_READ)
        while sel.get_map():
            left = deadline - time.monotonic()
            if left <= 0:
                raise subprocess.TimeoutExpired(process.args, timeout)
            for key, _ in sel.select(left):
                chunk = os.read(key.fd, _READ_CHUNK)
                if not chunk:
                    sel.unregister(key.fd)
                    continue
                total += len(chunk)
                if total > limit:
                    raise OutputTooLarge(limit)
                got[key.fd] += chunk
    try:
        process.wait(max(0.0, deadline - time.monotonic()))
    except subprocess.TimeoutExpired:
        raise subprocess.TimeoutExpired(process.args, timeout) from None
    texts = [bytes(b).decode(errors="replace") for b in got.values()]
    return texts[0], texts[1] if len(texts) > 1 else ""


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


SUDO = "sudo -n --"
"""How bluegreen becomes root on a host when `ssh.become` is set: sudo, non-interactive
(`-n`: a password prompt is an error, `sudo: a password is required`, never a hang), as
Ansible's sudo become plugin runs without a password (`-n` in its default flags)."""


@overload
def as_root(command: str) -> str: ...
@overload
def as_root(command: bytes) -> bytes: ...
def as_root(command: str | bytes) -> str | bytes:
    """`command` (a shell command line) run by `sh` as root through `sudo -n`."""
    if isinstance(command, bytes):
        return SUDO.encode() + b" sh -c '" + command.replace(b"'", b"'\\''") + b"'"
    return f"{SUDO} sh -c '" + command.replace("'", "'\\''") + "'"
