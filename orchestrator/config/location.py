"""Where bluegreen.yml is, and how big it may be. Stdlib only: both the full loader
(`config.loaded`) and the incident path's snapshot (`config.snapshot`) need it."""

from __future__ import annotations

import os
from pathlib import Path

CONFIG_ENV = "BLUEGREEN_CONFIG"
DEFAULT_CONFIG_NAME = "bluegreen.yml"
MAX_CONFIG_BYTES = 1024 * 1024  # 1 MiB; a real config is a few KiB


def config_path(path: str | Path | None) -> tuple[Path, str]:
    """The config path and where it came from: `path`, else `$BLUEGREEN_CONFIG`, else
    ./bluegreen.yml (the second item is for error messages)."""
    if path is not None and str(path) != "":
        return Path(path).expanduser(), "given with -c/--config"
    env = os.environ.get(CONFIG_ENV, "")
    if env:
        return Path(env).expanduser(), f"from ${CONFIG_ENV}"
    return Path(DEFAULT_CONFIG_NAME), "the default in the current directory"
