"""The rollout's patch step: the playbook, and the truth about what it changed.

`patch_side()` starts the service's playbook and, while ansible-playbook starts (about
0.6 s of imports and parsing), opens bluegreen's SSH masters to the side's hosts (all at
once, strict host keys) and reads every host's package database over them. Ansible's ssh is
a small wrapper that waits until that read is done, so the read always sees the hosts as
they were before the playbook, and Ansible then runs over the masters without a handshake
of its own. After the playbook, the package database is read again and the masters close.

The result says what changed (`N packages changed on M hosts` and the list), warns when the
playbook changed nothing, and gives the side's patch level from what is installed, not from
what was asked.

When the inventory chooses another ssh program or connection type for a host (the wrapper
would not be used), the read happens before the playbook starts instead.
"""

from __future__ import annotations

import shlex
import shutil
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from orchestrator.config.loaded import LoadedConfig
from orchestrator.config.models import PackageSpec
from orchestrator.inventory import Fleet, Host
from orchestrator.patching.changes import (
    SNAPSHOT_COMMAND,
    SideChanges,
    Snapshot,
    compare,
    installed_level,
    parse_snapshot,
    version_of,
)
from orchestrator.patching.results import PatchProgress, PatchResult
from orchestrator.patching.runner import prepare, run_playbook
from orchestrator.patching.ssh import Masters, Output, control_dir
from orchestrator.sides import Side

_READ_TIMEOUT = 60.0


@dataclass
class SidePatch:
    """A patch step's outcome: the run, what changed, the installed level, warnings."""

    result: PatchResult
    changes: SideChanges
    level: str | None
    warnings: list[str] = field(default_factory=list)
    asked: list[PackageSpec] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return self.result.ok


def _snapshots(outputs: Mapping[str, Output]) -> dict[str, Snapshot | str]:
    found: dict[str, Snapshot | str] = {}
    for host, out in outputs.items():
        if out.error is not None:
            found[host] = out.error
        elif out.rc != 0:
            found[host] = (out.stderr.strip() or f"exit {out.rc}")[-300:]
        else:
            snap = parse_snapshot(out.stdout)
            found[host] = snap if snap else "no installed packages listed"
    return found


def warnings_for(
    changes: SideChanges, asked: Sequence[PackageSpec], result: PatchResult
) -> list[str]:
    """What a careful operator wants to hear about a run that 'succeeded'."""
    if not result.ok:
        return []
    out: list[str] = []
    read = sorted(changes.hosts)
    unchanged = [h for h in read if not changes.hosts[h]]
    if read and len(unchanged) == len(read):
        out.append(
            f"the playbook changed no package on {', '.join(read)}: check that it installs "
            "what was asked (a package cache it did not refresh, a condition that skipped "
            "the install)"
        )
    elif unchanged:
        out.append(f"no package changed on {', '.join(unchanged)} (other hosts changed)")
    for spec in asked:
        if spec.version is None:
            continue
        off = sorted(
            f"{host} has {version}"
            for host, snap in changes.after.items()
            for version in [version_of(snap, spec.name)]
            if version != spec.version
        )
        if off:
            out.append(f"{spec.name}: asked {spec.version}, but {'; '.join(off)}")
    for host, why in sorted(changes.unread.items()):
        out.append(f"could not read the installed packages of {host} ({why})")
    return out


def patch_side(
    config: LoadedConfig,
    service: str,
    side: Side,
    packages: Sequence[PackageSpec] | None,
    *,
    on_event: Callable[[PatchProgress], None] | None = None,
    cancel: Callable[[], bool] | None = None,
    fleet: Fleet | None = None,
) -> SidePatch:
    """Patch `side` of `service` and say what changed. `packages=None`: the config's.
    `fleet`: the command's parse of the inventory (None: parse it).

    Raises what `patch_hosts` raises (BadInput, PatchFailed); a failed host is in the result.
    """
    from orchestrator.inventory import load_fleet

    started = time.monotonic()
    fleet = fleet or load_fleet(config)
    run = prepare(config, service, side, list(packages) if packages else None, fleet=fleet)
    hosts = fleet.service(service).side(side)
    asked = list(packages) if packages else list(config.service(service).patch.packages)
    run_dir = control_dir()
    masters = Masters(config, hosts, run_dir / "cp", timeout=config.model.ssh.connect_timeout)
    gate = run_dir / "read-done"
    before: dict[str, Snapshot | str] = {}

    def read_before() -> None:
        try:
            before.update(_snapshots(masters.open_and_run(SNAPSHOT_COMMAND, _READ_TIMEOUT)))
        except Exception as exc:  # noqa: BLE001 - a failed read is reported, not fatal
            before.update({h.name: f"not read: {exc}" for h in hosts})
        finally:
            gate.touch()  # Ansible's ssh may go on (also when the read failed)

    # The playbook runs on this thread (its callbacks may use the caller's state store);
    # the read runs beside it while ansible-playbook starts.
    reader = threading.Thread(target=read_before, name="patch-read-before", daemon=True)
    try:
        (run_dir / "cp").mkdir(mode=0o700)
        wrapper = _gate_wrapper(run_dir, gate) if _wrapper_is_used(hosts) else None
        if wrapper is None:
            read_before()
        else:
            reader.start()
        result = run_playbook(
            run, on_event=on_event, cancel=cancel, run_dir=run_dir, ssh_executable=wrapper
        )
        if reader.is_alive():
            reader.join()
        after = _snapshots(masters.run(SNAPSHOT_COMMAND, _READ_TIMEOUT))
    finally:
        gate.touch()
        if reader.is_alive():
            reader.join()
        masters.close()
        shutil.rmtree(run_dir, ignore_errors=True)
    changes = compare(before, after)
    level = installed_level([p.name for p in asked], changes.after)
    seconds = time.monotonic() - started
    return SidePatch(result, changes, level, warnings_for(changes, asked, result), asked, seconds)


def step_record(patched: SidePatch, side: str, asked_level: str) -> dict[str, Any]:
    """The patch step's journal data: the level from what is installed (`asked_level`
    when nothing asked was named, e.g. security updates), what changed, the warnings."""
    versions: dict[str, dict[str, str]] = {}
    for host, r in patched.result.hosts.items():
        snap = patched.changes.after.get(host)
        if snap is not None and patched.asked:
            versions[host] = {p.name: version_of(snap, p.name) for p in patched.asked}
        else:
            versions[host] = dict(r.versions)
    return {
        "side": side,
        "patch_level": patched.level or asked_level,
        "asked": asked_level,
        "seconds": round(patched.seconds, 1),
        "hosts": {
            h: {"versions": versions[h], "restarted": r.restarted}
            for h, r in patched.result.hosts.items()
        },
        "changes": patched.changes.as_dict(),
        "warnings": patched.warnings,
    }


def _wrapper_is_used(hosts: Sequence[Host]) -> bool:
    """False when the inventory picks another ssh program or connection for a host."""
    for h in hosts:
        if h.vars.get("ansible_ssh_executable"):
            return False
        if h.vars.get("ansible_connection") not in (None, "ssh", "smart"):
            return False
    return True


def _gate_wrapper(run_dir: Path, gate: Path) -> Path:
    """The ssh program Ansible gets: it waits for `gate` (at most 120 s), then runs ssh."""
    ssh = shutil.which("ssh") or "/usr/bin/ssh"
    script = run_dir / "ssh-after-read"
    script.write_text(
        "#!/bin/sh\n"
        "# bluegreen: Ansible's ssh waits until bluegreen has read the hosts' packages\n"
        "n=0\n"
        f"while [ ! -e {shlex.quote(str(gate))} ]; do\n"
        "  n=$((n + 1))\n"
        '  if [ "$n" -gt 6000 ]; then\n'
        '    echo "bluegreen: the package read before patching did not finish" >&2; exit 255\n'
        "  fi\n"
        "  sleep 0.02\n"
        "done\n"
        f'exec {shlex.quote(ssh)} "$@"\n'
    )
    script.chmod(0o700)
    return script
