"""The one subprocess helper: exit codes are the caller's, a timeout kills the whole process
group (children that hold the pipes included), and a pid is alive until reaped."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from orchestrator.processes import alive, run


def test_output_exit_code_stdin_env_and_cwd(tmp_path: Path) -> None:
    done = run(
        ["sh", "-c", 'cat; echo "$X $(pwd)"; echo oops >&2; exit 3'],
        timeout=10,
        input_text="in\n",
        env={"X": "x", "PATH": os.environ["PATH"]},
        cwd=tmp_path,
    )
    assert done.returncode == 3
    assert done.stdout == f"in\nx {tmp_path}\n" and done.stderr == "oops\n"
    merged = run(["sh", "-c", "echo a; echo b >&2"], timeout=10, merge_stderr=True)
    assert merged.stdout == "a\nb\n" and merged.stderr == ""


def test_stdin_is_closed_unless_given() -> None:
    assert run(["cat"], timeout=10).stdout == ""


def test_undecodable_output_is_replaced_not_raised() -> None:
    assert run(["printf", "\\377ok"], timeout=10).stdout == "\ufffdok"


def test_a_timeout_kills_the_group_and_keeps_what_was_written(tmp_path: Path) -> None:
    pidfile = tmp_path / "child.pid"
    started = time.monotonic()
    with pytest.raises(subprocess.TimeoutExpired) as err:
        # the background child keeps stdout open: without the group kill this waits 60 s
        run(
            ["sh", "-c", f"sleep 60 & echo $! > {pidfile}; echo started >&2; wait"],
            timeout=1,
        )
    assert time.monotonic() - started < 10
    assert err.value.stderr == "started\n"
    child = int(pidfile.read_text())
    deadline = time.monotonic() + 5
    while alive(child) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not alive(child)


def test_a_missing_program_is_an_os_error() -> None:
    with pytest.raises(FileNotFoundError):
        run(["/nonexistent/program"], timeout=5)


def test_alive() -> None:
    assert alive(os.getpid())
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    deadline = time.monotonic() + 10
    while alive(proc.pid) and time.monotonic() < deadline:  # a zombie until reaped
        time.sleep(0.05)
    assert not alive(proc.pid)
    proc.wait()
    assert not alive(proc.pid)
