"""Child processes and process ids, stdlib only (the state store and the command router
import it): whether a process is alive."""

from __future__ import annotations

import os
from pathlib import Path


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
