"""A patch run's ansible-playbook never outlives the run (orchestrator/patching/lifetime.py):
a callback that raises (the state store lost its session) cancels the playbook and the error
comes after it ended; a kill -9 of bluegreen takes the playbook down with it (leash.py).
Real ansible-runner and ansible-playbook runs against localhost."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import pytest

from orchestrator.errors import Fenced
from orchestrator.patching.lifetime import Guarded, end_group, group_members
from orchestrator.patching.runner import PlaybookRun, run_playbook
from orchestrator.processes import child_env
from orchestrator.testing import fake_config

PLAY = """\
- hosts: localhost
  gather_facts: false
  tasks:
    - ansible.builtin.command: sleep 300
"""


def processes(needle: str, where: str = "cmdline") -> list[int]:
    """Processes (not zombies, not this one) whose /proc/PID/`where` holds `needle`."""
    found = []
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit() or entry.name == str(os.getpid()):
            continue
        try:
            text = Path(entry.path, where).read_bytes()
            state = Path(entry.path, "stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if state != "Z" and needle.encode() in text:
            found.append(int(entry.name))
    return found


def marked(mark: str) -> list[int]:
    """The playbook, its workers and the task's `sleep` (their environment carries `mark`)."""
    return processes(f"BLUEGREEN_TEST_RUN={mark}\0", "environ")


def wait_until(check: Callable[[], bool], seconds: float, what: str) -> None:
    deadline = time.monotonic() + seconds
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {seconds}s waiting for {what}")
        time.sleep(0.1)


def sleeping(seconds: str) -> bool:
    return bool(processes(f"sleep\0{seconds}\0"))


def unique_seconds() -> str:
    return str(uuid.uuid4().int % 100000 + 200000)


def _kwargs(tmp_path: Path, mark: str, seconds: str) -> dict[str, object]:
    playbook = tmp_path / "play.yml"
    playbook.write_text(PLAY.replace("300", seconds))
    data = tmp_path / "run"
    data.mkdir()
    envvars = child_env({"ANSIBLE_LOCAL_TEMP": str(tmp_path / "tmp"),
                         "ANSIBLE_PYTHON_INTERPRETER": sys.executable,
                         "BLUEGREEN_TEST_RUN": mark})
    return {"private_data_dir": str(data), "playbook": str(playbook),
            "inventory": "localhost,", "envvars": envvars, "suppress_env_files": True,
            "quiet": True, "timeout": 600, "settings": {"suppress_ansible_output": True}}


def test_a_cancel_check_that_raises_ends_the_playbook_then_raises(tmp_path: Path) -> None:
    """The rollout's cancel check reads the store; a PostgreSQL session that ended makes it
    raise. The playbook is cancelled and has ended when the error comes out."""
    mark = unique_seconds()
    (tmp_path / "conf").mkdir()
    config = fake_config(tmp_path / "conf")
    config.inventory_path.write_text(json.dumps({"all": {"children": {"web_green": {"hosts": {
        "localhost": {"ansible_connection": "local", "ansible_become": False,
                      "ansible_python_interpreter": sys.executable}}}}}}))
    playbook = tmp_path / "play.yml"
    playbook.write_text(PLAY.replace("300", mark))
    run = PlaybookRun(config=config, service="web", side="green", group="web_green",
                      playbook=playbook, extravars={}, expected=["localhost"], timeout=600,
                      check_mode=False)

    def lost_session() -> bool:
        if sleeping(mark):
            raise Fenced("the database session holding the lock of web ended")
        return False

    started = time.monotonic()
    try:
        with pytest.raises(Fenced, match="session holding the lock of web ended"):
            run_playbook(run, cancel=lost_session)
        assert not sleeping(mark)  # ended before the error came out, nothing left behind
        assert time.monotonic() - started < 120
    finally:
        for pid in processes(f"sleep\0{mark}"):
            os.kill(pid, signal.SIGKILL)


def test_a_progress_display_that_raises_cancels_at_the_next_poll() -> None:
    guard = Guarded(lambda: False, lambda event: (_ for _ in ()).throw(KeyboardInterrupt()))
    assert guard.cancel() is False
    assert guard.event({"event": "runner_on_ok"}) is True  # the event is still written
    assert guard.cancel() is True
    with pytest.raises(KeyboardInterrupt):
        guard.raise_kept()


DRIVER = """\
import json, sys
from orchestrator.patching.runner import _start
_start(cancel_callback=lambda: False, **json.loads(sys.argv[1]))
"""


def test_a_kill_9_of_bluegreen_takes_the_playbook_down(tmp_path: Path) -> None:
    mark, seconds = uuid.uuid4().hex, unique_seconds()
    proc = subprocess.Popen([sys.executable, "-c", textwrap.dedent(DRIVER),
                             json.dumps(_kwargs(tmp_path, mark, seconds))])
    try:
        wait_until(lambda: bool(marked(mark)) and sleeping(seconds) or proc.poll() is not None,
                   120, "the playbook's task to run")
        assert proc.poll() is None
        proc.kill()
        proc.wait()
        wait_until(lambda: not marked(mark), 30, "the playbook to end with its parent")
        group = int((tmp_path / "run" / "leash.pid").read_text())
        # the leash kills the group, then each member takes a moment to exit: wait for it
        wait_until(lambda: not group_members(group), 30, "the playbook's group to end")
        assert not group_members(group)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        for pid in marked(mark):
            os.kill(pid, signal.SIGKILL)


def test_end_group_kills_what_is_left_and_waits(tmp_path: Path) -> None:
    pidfile = tmp_path / "leash.pid"
    assert end_group(pidfile)  # never started: nothing to do
    proc = subprocess.Popen(["sleep", "300"], start_new_session=True)
    try:
        pidfile.write_text(str(proc.pid))
        assert group_members(proc.pid) == [proc.pid]
        assert end_group(pidfile, wait=30)
        assert proc.wait(timeout=5) == -signal.SIGKILL  # killed, not reaped by end_group
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
