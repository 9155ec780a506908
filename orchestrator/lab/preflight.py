"""What the lab needs of this machine before `up` touches anything: root, the commands it
runs, overlayfs, network namespaces, enough inotify instances for its hosts."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from orchestrator.errors import LabError
from orchestrator.lab.shape import MAX_HOSTS

REQUIRED = {
    "debootstrap": "debootstrap",
    "systemd-nspawn": "systemd-container",
    "haproxy": "haproxy",
    "ip": "iproute2",
    "tc": "iproute2",
    "dpkg-deb": "dpkg",
    "dpkg-scanpackages": "dpkg-dev",
    "ssh-keygen": "openssh-client",
    "nsenter": "util-linux",
    "chroot": "coreutils",
    "gpg": "gnupg",  # the lab signs its repository (repokey)
    "gpgv": "gpgv",
    "prometheus": "prometheus",  # the lab's metrics (metrics.py)
}
# inotify instances a booted host's systemd and journald hold (measured: 8)
_INOTIFY_PER_HOST = 16


def preflight() -> None:
    """LabError naming what is missing and the fix."""
    if os.geteuid() != 0:
        raise LabError(
            "the lab needs root (it mounts overlays and creates network namespaces)",
            hint="run it as root, e.g. `sudo bluegreen lab up`",
        )
    missing = sorted({pkg for cmd, pkg in REQUIRED.items() if shutil.which(cmd) is None})
    if missing:
        raise LabError(
            f"missing packages for the lab: {', '.join(missing)}",
            hint=f"apt-get install -y {' '.join(missing)} (or run the README's setup command)",
        )
    if "overlay" not in Path("/proc/filesystems").read_text():
        raise LabError("this kernel has no overlay filesystem", hint="modprobe overlay")
    # every lab on the machine counts (the limit is per user): room for this one's hosts
    _ensure_inotify_instances(1024 + _INOTIFY_PER_HOST * MAX_HOSTS)
    if not Path("/proc/self/ns/net").exists():
        raise LabError(
            "this kernel has no network namespaces",
            hint="run the lab on a Linux machine with CONFIG_NET_NS",
        )


def _ensure_inotify_instances(minimum: int) -> None:
    """Each booted host's systemd holds several inotify instances (8 measured); the kernel
    default (128 per user) is exhausted by about 16 hosts, and then hosts fail to boot with
    "Too many open files". The limit is per user, so every lab on the machine counts.
    Raise it (a runtime sysctl, not persisted)."""
    knob = Path("/proc/sys/fs/inotify/max_user_instances")
    try:
        if int(knob.read_text()) < minimum:
            knob.write_text(str(minimum))
    except (OSError, ValueError) as exc:
        raise LabError(f"cannot raise fs.inotify.max_user_instances to {minimum} ({exc})",
                       hint=f"sysctl -w fs.inotify.max_user_instances={minimum}") from exc

