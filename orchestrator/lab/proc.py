"""Small process helpers for the lab: run commands, find and stop only our own processes.

`alive` lives in `orchestrator.processes` (the campaign engine needs it too)."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Sequence
from pathlib import Path

from orchestrator import processes
from orchestrator.errors import LabError
from orchestrator.processes import alive as alive  # re-exported: lab modules use it from here


def run(
    argv: Sequence[str],
    *,
    check: bool = True,
    timeout: float = 120,
    input_text: str | None = None,
    cwd: Path | None = None,
) -> subprocess.CompletedProcess[str]:
    """Run a command (argv list, never a shell; `orchestrator.processes.run`) and raise
    LabError with its stderr on failure."""
    try:
        proc = processes.run(argv, timeout=timeout, input_text=input_text, cwd=cwd)
    except FileNotFoundError as exc:
        raise LabError(
            f"command not found: {argv[0]}",
            hint="run the README's setup command (it installs the lab's packages)",
        ) from exc
    except subprocess.TimeoutExpired as exc:
        raise LabError(f"command timed out after {timeout:.0f}s: {' '.join(argv)}") from exc
    if check and proc.returncode != 0:
        err = (proc.stderr or proc.stdout).strip().splitlines()[-5:]
        raise LabError(f"command failed ({proc.returncode}): {' '.join(argv)}: {' / '.join(err)}")
    return proc


def cmdline(pid: int) -> str:
    try:
        return (
            Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        )
    except OSError:
        return ""


def children(pid: int) -> list[int]:
    kids: list[int] = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            kids += [int(x) for x in (task / "children").read_text().split()]
        except OSError:
            continue
    return kids


def pids_mentioning(marker: str) -> list[int]:
    """PIDs whose command line mentions `marker` (our lab directory): only our own processes."""
    found = []
    me = os.getpid()
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and int(entry.name) != me and marker in cmdline(int(entry.name)):
            found.append(int(entry.name))
    return found


def kill_and_wait(pids: Sequence[int], *, sig: int = signal.SIGKILL, timeout: float = 10) -> None:
    for pid in pids:
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            pass
    deadline = time.monotonic() + timeout
    pending = [p for p in pids if alive(p)]
    while pending and time.monotonic() < deadline:
        time.sleep(0.05)
        for p in pending:
            try:
                os.waitpid(p, os.WNOHANG)
            except ChildProcessError:
                pass
        pending = [p for p in pending if alive(p)]


def lab_processes(root: Path) -> list[int]:
    """Our processes only: nspawn/haproxy/prometheus/nginx master/repo server naming the lab
    dir on their command line, nginx workers whose parent is such a master (their own
    command line names nothing), and container processes whose root filesystem is a lab
    overlay (found through their mountinfo, which also finds containers whose nspawn
    already died)."""
    marker = str(root)
    found = []
    workers: dict[int, int] = {}
    """nginx worker pid -> its parent."""
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        pid = int(entry.name)
        try:
            argv = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        exe = os.path.basename(argv[0].decode(errors="replace")) if argv else ""
        text = b" ".join(argv).decode(errors="replace")
        if marker + "/" in text and (exe in ("systemd-nspawn", "haproxy", "prometheus")
                                     or "http.server" in text
                                     or text.startswith("nginx: master process")):
            found.append(pid)
        elif text.startswith(("nginx: worker process", "nginx: cache")):
            workers[pid] = _parent(entry)
        elif _root_mount_is_lab(entry, marker):
            found.append(pid)
    return found + [pid for pid, parent in workers.items() if parent in found]


def _parent(proc_dir: Path) -> int:
    try:
        return int((proc_dir / "stat").read_text().rsplit(")", 1)[1].split()[1])
    except (OSError, ValueError, IndexError):
        return 0


def _root_mount_is_lab(proc_dir: Path, marker: str) -> bool:
    try:
        with open(proc_dir / "mountinfo") as f:
            for line in f:
                fields = line.split()
                if len(fields) > 4 and fields[4] == "/":
                    return f"upperdir={marker}/" in line
    except OSError:
        return False
    return False

