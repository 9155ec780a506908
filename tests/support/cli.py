"""Run the real `bluegreen` CLI in a subprocess, as a user would."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

BLUEGREEN = [sys.executable, "-m", "orchestrator"]


def bluegreen(
    config: Path, *args: str, env: dict[str, str] | None = None, timeout: float = 600
) -> subprocess.CompletedProcess[str]:
    full_env = {**os.environ, **(env or {})}
    return subprocess.run(
        [*BLUEGREEN, "-c", str(config), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=full_env,
        check=False,
    )


def bluegreen_json(config: Path, *args: str, **kw: Any) -> tuple[int, Any]:
    proc = bluegreen(config, *args, "--json", **kw)
    try:
        doc = json.loads(proc.stdout) if proc.stdout.strip() else None
    except json.JSONDecodeError as exc:
        raise AssertionError(f"not JSON: {proc.stdout!r} / {proc.stderr!r}") from exc
    return proc.returncode, doc


def on_tty(argv: list[str], *, timeout: float = 600) -> tuple[int, str]:
    """Run `argv` with stdout and stderr on a pseudo-terminal, as an operator sees it (a tty:
    click and rich keep their colours, nothing strips escape sequences for us): (exit code,
    everything it wrote). stdin is /dev/null."""
    import pty
    import select
    import time

    leader, follower = pty.openpty()
    proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=follower, stderr=follower,
                            close_fds=True)
    os.close(follower)
    out = bytearray()
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([leader], [], [], 1.0)
            if not ready:
                if proc.poll() is not None:
                    break
                continue
            try:
                chunk = os.read(leader, 65536)
            except OSError:  # EIO: every writer has closed the terminal
                break
            if not chunk:
                break
            out += chunk
        else:
            proc.kill()
            raise AssertionError(f"{argv} did not finish in {timeout} s: {bytes(out)[-2000:]!r}")
        rc = proc.wait(timeout=30)
    finally:
        os.close(leader)
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    return rc, out.decode(errors="replace")


def bluegreen_on_tty(config: Path, *args: str, timeout: float = 600) -> tuple[int, str]:
    return on_tty([*BLUEGREEN, "-c", str(config), *args], timeout=timeout)
