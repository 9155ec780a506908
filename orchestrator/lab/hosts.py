"""One lab host: its own overlay root on a small tmpfs, booted with systemd-nspawn."""

from __future__ import annotations

import os
import shutil
import subprocess
from dataclasses import dataclass
from functools import partial
from pathlib import Path

from orchestrator.errors import LabError
from orchestrator.lab import net, repokey
from orchestrator.lab.paths import HOST_TMPFS_SIZE, REPO_HOSTNAME, LabPaths
from orchestrator.lab.proc import alive, children, run


@dataclass(frozen=True)
class HostSpec:
    name: str
    service: str
    side: str
    index: int
    address: str


def host_dir(paths: LabPaths, name: str) -> Path:
    return paths.hosts / name


def prepare_root(
    paths: LabPaths, spec: HostSpec, lower: str, host_key: Path, client_pub: str
) -> Path:
    """Mount the host's writable tmpfs and overlay root, and write its identity into it."""
    hdir = host_dir(paths, spec.name)
    disk = hdir / "disk"
    root = hdir / "root"
    disk.mkdir(parents=True, exist_ok=True)
    root.mkdir(exist_ok=True)
    run(
        [
            "mount",
            "-t",
            "tmpfs",
            "-o",
            f"size={HOST_TMPFS_SIZE},mode=0755",
            f"bglab-{spec.name}",
            str(disk),
        ]
    )
    (disk / "upper").mkdir()
    (disk / "work").mkdir()
    run(
        [
            "mount",
            "-t",
            "overlay",
            f"bglab-{spec.name}",
            "-o",
            f"lowerdir={lower},upperdir={disk / 'upper'},workdir={disk / 'work'}",
            str(root),
        ]
    )
    (root / "etc/hostname").write_text(spec.name + "\n")
    (root / "etc/hosts").write_text(
        f"127.0.0.1 localhost\n{spec.address} {spec.name}\n{paths.gateway} {REPO_HOSTNAME}\n"
    )
    if paths.repo_keyring.is_file():  # apt verifies the lab repository (signed-by)
        repokey.trust_on_host(paths, root)
    meta = root / "etc/bluegreen-lab"
    meta.mkdir(exist_ok=True)
    (meta / "service").write_text(spec.service + "\n")
    (meta / "side").write_text(spec.side + "\n")
    key = root / "etc/ssh/ssh_host_ed25519_key"
    shutil.copyfile(host_key, key)
    key.chmod(0o600)
    shutil.copyfile(host_key.with_suffix(".pub"), key.with_suffix(".pub"))
    ssh_dir = root / "root/.ssh"
    ssh_dir.mkdir(mode=0o700, exist_ok=True)
    (ssh_dir / "authorized_keys").write_text(client_pub)
    (ssh_dir / "authorized_keys").chmod(0o600)
    return root


def boot(paths: LabPaths, spec: HostSpec) -> int:
    """Start systemd-nspawn for the host in its network namespace; return the nspawn PID."""
    root = host_dir(paths, spec.name) / "root"
    log = paths.logs / f"{spec.name}.console.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    cgroups = host_cgroups(paths, spec.name)
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [
                "systemd-nspawn",
                "--boot",
                "--register=no",
                "--keep-unit",
                "--quiet",
                "-D",
                str(root),
                "-M",
                machine_name(paths, spec.name),
                f"--network-namespace-path=/run/netns/{net.netns_name(paths, spec.name)}",
                "--console=read-only",
                "--link-journal=no",
            ],
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            preexec_fn=partial(_enter_cgroups, cgroups),
        )
    return proc.pid


def machine_name(paths: LabPaths, host: str) -> str:
    return f"{paths.netns_prefix}{host}"


def host_cgroups(paths: LabPaths, host: str) -> list[Path]:
    """A cgroup of its own per host, in every hierarchy systemd uses (v1 name=systemd,
    hybrid unified, or pure v2). Without it, nspawn puts every container's `payload` in
    the same cgroup and their systemds race on it (units fail with 219/CGROUP)."""
    own: dict[str, str] = {}
    for line in Path("/proc/self/cgroup").read_text().splitlines():
        num, ctrl, path = line.split(":", 2)
        own[ctrl] = path
    roots = []
    if (Path("/sys/fs/cgroup/cgroup.controllers")).exists():
        roots.append((Path("/sys/fs/cgroup"), own.get("", "/")))
    else:
        for sub, key in (("systemd", "name=systemd"), ("unified", "")):
            if (Path("/sys/fs/cgroup") / sub / "cgroup.procs").exists():
                roots.append((Path("/sys/fs/cgroup") / sub, own.get(key, "/")))
    name = machine_name(paths, host)
    return [root / rel.lstrip("/") / name for root, rel in roots]


def _enter_cgroups(cgroups: list[Path]) -> None:  # runs in the child, before exec
    for cg in cgroups:
        try:
            cg.mkdir(exist_ok=True)
            (cg / "cgroup.procs").write_text(str(os.getpid()))
        except OSError:
            pass  # fall back to the shared cgroup rather than not booting at all


def remove_cgroups(paths: LabPaths, host: str) -> None:
    for cg in host_cgroups(paths, host):
        if not cg.exists():
            continue
        for d in sorted(
            (p for p in cg.rglob("*") if p.is_dir()), key=lambda p: len(p.parts), reverse=True
        ):
            try:
                d.rmdir()
            except OSError:
                pass
        try:
            cg.rmdir()
        except OSError:
            pass


def leader(nspawn_pid: int) -> int:
    """The container's init (PID 1 inside), child of systemd-nspawn."""
    kids = children(nspawn_pid)
    if not kids:
        raise LabError(
            f"lab host (nspawn pid {nspawn_pid}) has no running init",
            hint="run `bluegreen lab down` and `bluegreen lab up` again",
        )
    return kids[0]


def exec_in(
    nspawn_pid: int, argv: list[str], *, timeout: float = 60, check: bool = True
) -> subprocess.CompletedProcess[str]:
    """Run a command inside the host's namespaces (like `machinectl shell`, without machined)."""
    pid = leader(nspawn_pid)
    return run(
        ["nsenter", "-t", str(pid), "-m", "-u", "-i", "-n", "-p", "--", *argv],
        timeout=timeout,
        check=check,
    )


def stop(nspawn_pid: int) -> None:
    """Kill the container's init: the kernel ends its whole PID namespace at once."""
    if not alive(nspawn_pid):
        return
    for kid in children(nspawn_pid):
        try:
            os.kill(kid, 9)
        except ProcessLookupError:
            pass


def unmount_under(root: Path) -> list[str]:
    """Unmount everything mounted below `root`, deepest first; return what stays mounted."""

    def mounted() -> list[str]:
        with open("/proc/mounts") as f:
            points = [line.split()[1].encode().decode("unicode_escape") for line in f]
        prefix = str(root).rstrip("/") + "/"
        return sorted((p for p in points if p.startswith(prefix)), key=len, reverse=True)

    for point in mounted():
        if run(["umount", point], check=False).returncode != 0:
            run(["umount", "-l", point], check=False)
    return mounted()
