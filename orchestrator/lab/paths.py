"""Where the lab keeps things, and the fixed names it uses on this machine."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

BRIDGE = "bglab0"
NETNS_PREFIX = "bglab-"
VETH_PREFIX = "bglv"
SUBNET_PREFIX = "10.231.0"  # /24 on the lab bridge only; hosts have no route beyond it
GATEWAY = f"{SUBNET_PREFIX}.1"
REPO_PORT = 8099
FRONTEND_BASE_PORT = 18080
HOST_TMPFS_SIZE = "1g"  # each host's writable layer; small enough that `disk-full` is real


@dataclass(frozen=True)
class LabPaths:
    """All lab paths. `root` holds the running lab; `cache` holds images reused across labs."""

    root: Path
    cache: Path

    @classmethod
    def default(cls) -> LabPaths:
        return cls(
            root=Path(os.environ.get("BLUEGREEN_LAB_DIR", "/var/lib/bluegreen-lab")),
            cache=Path(os.environ.get("BLUEGREEN_LAB_CACHE", "/var/cache/bluegreen-lab")),
        )

    @property
    def state_file(self) -> Path:
        return self.root / "lab.json"

    @property
    def hosts(self) -> Path:
        return self.root / "hosts"

    @property
    def ssh(self) -> Path:
        return self.root / "ssh"

    @property
    def ssh_config(self) -> Path:
        return self.ssh / "ssh_config"

    @property
    def known_hosts(self) -> Path:
        return self.ssh / "known_hosts"

    @property
    def client_key(self) -> Path:
        return self.ssh / "id_ed25519"

    @property
    def repo(self) -> Path:
        return self.root / "repo"

    @property
    def haproxy(self) -> Path:
        return self.root / "haproxy"

    @property
    def haproxy_socket(self) -> Path:
        return self.haproxy / "admin.sock"

    @property
    def map_file(self) -> Path:
        return self.haproxy / "bluegreen.map"

    @property
    def server_state_file(self) -> Path:
        return self.haproxy / "server-state"

    @property
    def inventory(self) -> Path:
        return self.root / "inventory" / "hosts.yml"

    @property
    def config(self) -> Path:
        return self.root / "bluegreen.yml"

    @property
    def logs(self) -> Path:
        return self.root / "logs"
