"""The lab's host images, built once and cached outside the repository, keyed by recipe.

Two layers: `base-<key>` is a Debian 12 minbase root made by debootstrap; `layer-<key>` is an
overlay upper directory on top of it with the lab's tweaks (sshd, apt sources, vulnerable demo
packages installed). Hosts boot `layer:base` as overlay lower directories.
"""

from __future__ import annotations

import hashlib
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path

from orchestrator.errors import LabError
from orchestrator.lab.paths import REPO_HOSTNAME, REPO_PORT, LabPaths
from orchestrator.lab.proc import run

SUITE = "bookworm"
MIRROR = "http://deb.debian.org/debian"
INCLUDE = [
    "systemd",
    "systemd-sysv",
    "dbus",
    "openssh-server",
    "python3",
    "python3-apt",
    "sudo",
    "iproute2",
    "procps",
    "ca-certificates",
]
# units that would make hosts do work on their own (apt timers) or wait for things we lack
MASK = [
    "apt-daily.timer",
    "apt-daily-upgrade.timer",
    "e2scrub_all.timer",
    "fstrim.timer",
    "systemd-networkd-wait-online.service",
    "getty@tty1.service",
]
BASE_RECIPE = f"v1 debootstrap --variant=minbase --include={','.join(INCLUDE)} {SUITE} mask={MASK}"

Progress = Callable[[str], None]


def base_key() -> str:
    return hashlib.sha256(BASE_RECIPE.encode()).hexdigest()[:12]


def ensure_base(paths: LabPaths, say: Progress) -> Path:
    """Return the cached base root, building it with debootstrap (about a minute) if missing."""
    target = paths.cache / f"base-{base_key()}"
    if (target / ".complete").exists():
        return target
    paths.cache.mkdir(parents=True, exist_ok=True)
    tmp = paths.cache / f"base-{base_key()}.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    say("building the Debian 12 base image with debootstrap (once; about a minute)")
    proc = subprocess.run(
        [
            "debootstrap",
            "--variant=minbase",
            f"--include={','.join(INCLUDE)}",
            SUITE,
            str(tmp),
            MIRROR,
        ],
        capture_output=True,
        text=True,
        check=False,
        timeout=1200,
    )
    if proc.returncode != 0:
        tail = " / ".join((proc.stdout + proc.stderr).strip().splitlines()[-4:])
        shutil.rmtree(tmp, ignore_errors=True)
        raise LabError(
            f"debootstrap failed: {tail}",
            hint=f"check that {MIRROR} is reachable (apt-get update works) and the disk has 1 GB free",
        )
    for key in (tmp / "etc/ssh").glob("ssh_host_*"):
        key.unlink()  # every host gets its own key from the lab
    for unit in MASK:
        link = tmp / "etc/systemd/system" / unit
        link.unlink(missing_ok=True)
        link.symlink_to("/dev/null")
    (tmp / "etc/machine-id").write_text("")  # each boot makes its own
    shutil.rmtree(tmp / "var/cache/apt/archives", ignore_errors=True)
    (tmp / "var/cache/apt/archives/partial").mkdir(parents=True, exist_ok=True)
    (tmp / ".complete").write_text(BASE_RECIPE + "\n")
    if target.exists():
        shutil.rmtree(target)
    tmp.rename(target)
    return target


SOURCES = (
    f"deb [trusted=yes] http://{REPO_HOSTNAME}:{REPO_PORT}/stable ./\n"
    f"deb [trusted=yes] http://{REPO_HOSTNAME}:{REPO_PORT}/unsafe ./\n"
    # the real security updates pending for the image (lab/security.py): the hosts' only
    # security source, like deb.debian.org/debian-security on a real host
    f"deb [trusted=yes] http://{REPO_HOSTNAME}:{REPO_PORT}/bookworm-security ./\n"
)
# The unsafe suite holds the broken demo versions: priority 1 means apt never upgrades to
# them by itself; only an explicit `apt-get install demo-web=1.1.0` picks one.
PREFERENCES = "Package: *\nPin: release l=bluegreen-lab-unsafe\nPin-Priority: 1\n"
SSHD_DROPIN = (
    "# written by the bluegreen lab\n"
    "HostKey /etc/ssh/ssh_host_ed25519_key\n"
    "PermitRootLogin prohibit-password\n"
    "PasswordAuthentication no\n"
    "UseDNS no\n"
)


def layer_key(base: Path, debs_key: str) -> str:
    recipe = f"v2 {base.name} {debs_key} {SOURCES} {PREFERENCES} {SSHD_DROPIN}"
    return hashlib.sha256(recipe.encode()).hexdigest()[:12]


def ensure_layer(
    paths: LabPaths, base: Path, initial_debs: list[Path], debs_key: str, say: Progress
) -> Path:
    """Return the cached lab layer (an overlay upper dir) with the vulnerable demo packages."""
    key = layer_key(base, debs_key)
    target = paths.cache / f"layer-{key}"
    if (target / ".complete").exists():
        return target / "upper"
    say("preparing the lab layer (sshd, apt sources, demo packages at vulnerable versions)")
    tmp = paths.cache / f"layer-{key}.tmp"
    if tmp.exists():
        _umount_quiet(tmp / "mnt")
        shutil.rmtree(tmp)
    for d in ("upper", "work", "mnt"):
        (tmp / d).mkdir(parents=True)
    mnt = tmp / "mnt"
    run(
        [
            "mount",
            "-t",
            "overlay",
            "overlay",
            "-o",
            f"lowerdir={base},upperdir={tmp / 'upper'},workdir={tmp / 'work'}",
            str(mnt),
        ]
    )
    try:
        (mnt / "etc/apt/sources.list").unlink(missing_ok=True)
        for f in (mnt / "etc/apt/sources.list.d").glob("*"):
            f.unlink()
        (mnt / "etc/apt/sources.list.d/bluegreen-lab.list").write_text(SOURCES)
        (mnt / "etc/apt/preferences.d/bluegreen-lab").write_text(PREFERENCES)
        (mnt / "etc/ssh/sshd_config.d/bluegreen-lab.conf").write_text(SSHD_DROPIN)
        staged = []
        for deb in initial_debs:
            shutil.copy2(deb, mnt / "tmp" / deb.name)
            staged.append(f"/tmp/{deb.name}")
        run(["chroot", str(mnt), "dpkg", "-i", *staged], timeout=300)
        for name in staged:
            (mnt / name.lstrip("/")).unlink()
        run(["chroot", str(mnt), "systemctl", "enable", "demo-web.service", "ssh.service"])
    finally:
        _umount_quiet(mnt)
    shutil.rmtree(tmp / "work", ignore_errors=True)
    (tmp / ".complete").write_text(key + "\n")
    if target.exists():
        shutil.rmtree(target)
    tmp.rename(target)
    return target / "upper"


def _umount_quiet(path: Path) -> None:
    subprocess.run(["umount", str(path)], capture_output=True, check=False)
