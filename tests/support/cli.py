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
