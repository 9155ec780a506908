"""A systemd unit for a site's worker (`bluegreen worker --site S --install-unit`):
bluegreen-worker@S.service, a long-running service restarted when it fails.

Stopping it must let the rollouts in flight end (the worker's SIGTERM: no new claims, the
children finish, then it unregisters): `KillMode=mixed` sends SIGTERM to the worker alone
(not to its ansible-playbook, which would fail the patch), and only after a generous
`TimeoutStopSec` does systemd kill what is left of the group. The unit is checked with
`systemd-analyze verify` in a private directory before it is written, and an existing,
different unit is never overwritten unless asked (`replace`).
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from orchestrator.errors import BadInput, BluegreenError
from orchestrator.safe_write import write_file
from orchestrator.schedule.systemd import (
    SYSTEMD_DIR,
    bluegreen_executable,
    refuse_controls,
    systemd_quote,
    verify_units,
)

UNIT_PREFIX = "bluegreen-worker@"
STOP_TIMEOUT = "2h"
"""How long a stop waits for the rollouts in flight (a patch, its verification and bake)."""


def unit_name(site: str) -> str:
    return f"{UNIT_PREFIX}{site}.service"


def worker_command(config_path: Path, site: str, max_parallel: int) -> list[str]:
    refuse_controls([str(config_path.resolve()), site], "a worker unit's text")
    return [*bluegreen_executable(), "-c", str(config_path.resolve()), "worker",
            "--site", site, "--max-parallel", str(max_parallel)]


def render_unit(site: str, command: list[str]) -> str:
    refuse_controls([site, *command], "a worker unit's text")
    return "\n".join([
        f"# bluegreen worker: site {site} (written by `bluegreen worker --install-unit`)",
        "[Unit]",
        f"Description=bluegreen worker of site {site}: runs its services of campaigns run "
        "by workers",
        "After=network-online.target",
        "Wants=network-online.target",
        "",
        "[Service]",
        "Type=simple",
        "ExecStart=" + " ".join(systemd_quote(a) for a in command),
        "Restart=on-failure",
        "RestartSec=10s",
        # SIGTERM to the worker alone: it claims nothing new and lets its rollouts end;
        # its Ansible is not signalled (a killed patch would fail the service)
        "KillMode=mixed",
        "KillSignal=SIGTERM",
        f"TimeoutStopSec={STOP_TIMEOUT}",
        "",
        "[Install]",
        "WantedBy=multi-user.target",
        "",
    ])


@dataclass(frozen=True)
class WorkerUnit:
    path: Path
    text: str
    command: list[str]
    written: bool
    """False: a dry run, or the same unit was there already."""
    unchanged: bool = False
    verified: bool | None = None
    """`systemd-analyze verify`: passed, failed, None = not run (not installed)."""
    verify_output: str = ""

    @property
    def enable(self) -> str:
        return f"systemctl daemon-reload && systemctl enable --now {self.path.name}"

    def as_dict(self) -> dict[str, Any]:
        return {"unit": str(self.path), "command": self.command, "written": self.written,
                "unchanged": self.unchanged, "verified": self.verified,
                "verify_output": self.verify_output, "enable": self.enable,
                "text": self.text}


def install_worker_unit(config_path: Path, site: str, max_parallel: int,
                        directory: Path | None, *, dry_run: bool = False,
                        replace: bool = False) -> WorkerUnit:
    """Write the site's worker unit into `directory` (default /etc/systemd/system) after
    `systemd-analyze verify` passed on it; BadInput (exit 2, nothing written) when a
    different unit is there and `replace` is not set; BluegreenError (exit 1, nothing
    written) when systemd refuses the unit."""
    target = directory or SYSTEMD_DIR
    if not target.is_dir():
        raise BadInput(f"{target}: no such directory", hint="create it or pass another --dir")
    command = worker_command(config_path, site, max_parallel)
    text = render_unit(site, command)
    path = target / unit_name(site)
    existing = path.read_text(encoding="utf-8", errors="replace") if path.exists() else None
    if existing is not None and existing != text and not replace and not dry_run:
        raise BadInput(
            f"{path} exists and differs from the unit this command writes: not overwritten",
            hint="compare with --dry-run; pass --replace to overwrite it (then `systemctl "
            "daemon-reload && systemctl restart " + path.name + "`)")
    with tempfile.TemporaryDirectory(prefix="bluegreen-units-") as tmp:
        trial = Path(tmp) / path.name
        write_file(trial, text, mode=0o644)
        ok, output = verify_units([trial])
        output = output.replace(tmp + "/", "")
    if ok is False:
        raise BluegreenError(
            "systemd-analyze verify failed on the worker's unit: nothing was written",
            hint=output[:500] or f"see `systemd-analyze verify` on {path.name}")
    if dry_run or existing == text:
        return WorkerUnit(path, text, command, written=False, unchanged=existing == text,
                          verified=ok, verify_output=output)
    write_file(path, text, mode=0o644)  # as root into /etc/systemd/system: never via a link
    return WorkerUnit(path, text, command, written=True, verified=ok, verify_output=output)
