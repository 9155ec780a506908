"""The one subprocess helper: exit codes are the caller's, a timeout kills the whole process
group (children that hold the pipes included), and a pid is alive until reaped."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from orchestrator.processes import OutputTooLarge, alive, run


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


def _peak_rss_mb(code: str) -> tuple[float, str]:
    """Run `code` in a fresh interpreter; (its peak RSS in MB, what it printed)."""
    # VmHWM: the peak of this process's own memory (getrusage's ru_maxrss would carry the
    # parent's peak over fork and exec)
    script = code + "\nprint('RSS', open('/proc/self/status').read().split('VmHWM:')[1].split()[0])"
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          timeout=120, check=True)
    rss_kb = int(done.stdout.rsplit("RSS ", 1)[1])
    return rss_kb / 1024, done.stdout


def test_max_output_stops_a_huge_answer_at_the_cap_and_keeps_nothing() -> None:
    """512 MiB on stdout against an 8 MiB cap: the group is killed at the cap, the caller
    gets OutputTooLarge ("output too large (> 8 MB)"), the process stays small."""
    rss, out = _peak_rss_mb(
        "from orchestrator.processes import OutputTooLarge, run\n"
        "try:\n"
        "    run(['sh', '-c', 'head -c 536870912 /dev/zero; echo done >&2'], timeout=60,"
        " max_output=8 * 2**20)\n"
        "except OutputTooLarge as exc:\n"
        "    print('ERR', exc)\n"
    )
    assert "ERR output too large (> 8 MB)" in out, out
    assert rss < 80, f"peak RSS {rss:.0f} MB"
    print(f"peak RSS with a 512 MiB answer: {rss:.0f} MB")
    small = run(["sh", "-c", "echo out; echo err >&2; exit 4"], timeout=10, max_output=100)
    assert (small.returncode, small.stdout, small.stderr) == (4, "out\n", "err\n")
    # the cap counts stdout and stderr together
    with pytest.raises(OutputTooLarge, match=r"^output too large \(> "):
        run(["sh", "-c", "head -c 80 /dev/zero; head -c 80 /dev/zero >&2"], timeout=10,
            max_output=105)
    with pytest.raises(subprocess.TimeoutExpired):
        run(["sleep", "5"], timeout=0.3, max_output=100)


# -- the minimal environment of every child (issue 21, item 10) ---------------------------------
BLUEGREEN_ENV = {
    "PATH": "/usr/bin:/bin",
    "HOME": "/home/op",
    "LANG": "C.UTF-8",
    "LC_TIME": "de_DE.UTF-8",
    "SSH_AUTH_SOCK": "/run/agent.sock",
    "PGPASSWORD": "s3cret",
    "BLUEGREEN_DASHBOARD_TOKEN": "dash-t0ken",
    "GITHUB_TOKEN": "ghp_x",
    "AWS_SECRET_ACCESS_KEY": "k",
    "ANSIBLE_BECOME_PASS": "b",
    "ANSIBLE_CONFIG": "/etc/ansible/x.cfg",
    "PYTHONPATH": "/evil",
}


def test_child_env_is_an_allowlist_with_the_venv_first() -> None:
    from orchestrator.processes import child_env

    env = child_env({"BLUEGREEN_ACTION": "flip"}, environ=BLUEGREEN_ENV)
    bin_dir = str(Path(sys.prefix) / "bin")
    assert env == {
        "PATH": f"{bin_dir}:/usr/bin:/bin",
        "HOME": "/home/op",
        "LANG": "C.UTF-8",
        "LC_TIME": "de_DE.UTF-8",
        "SSH_AUTH_SOCK": "/run/agent.sock",
        "BLUEGREEN_ACTION": "flip",
    }
    kept = child_env(keep=("ANSIBLE_CONFIG", "NOT_SET"), environ=BLUEGREEN_ENV)
    assert kept["ANSIBLE_CONFIG"] == "/etc/ansible/x.cfg" and "NOT_SET" not in kept
    # no PATH at all: a sane default; the venv's bin/ is not listed twice
    assert child_env(environ={"PATH": f"{bin_dir}:/bin"})["PATH"] == f"{bin_dir}:/bin"
    assert child_env(environ={})["PATH"] == f"{bin_dir}:/usr/local/bin:/usr/bin:/bin"


def test_a_child_started_with_it_sees_no_secret(monkeypatch: pytest.MonkeyPatch) -> None:
    from orchestrator.processes import child_env

    for name, value in BLUEGREEN_ENV.items():
        if name != "PATH":
            monkeypatch.setenv(name, value)
    done = run(["env"], timeout=10, env=child_env())
    names = {line.split("=", 1)[0] for line in done.stdout.splitlines()}
    assert not names & {"PGPASSWORD", "BLUEGREEN_DASHBOARD_TOKEN", "GITHUB_TOKEN",
                        "AWS_SECRET_ACCESS_KEY", "ANSIBLE_BECOME_PASS", "PYTHONPATH"}, names
    assert "s3cret" not in done.stdout and "HOME=/home/op" in done.stdout
