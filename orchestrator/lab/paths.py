"""Where the lab keeps things, and the fixed names it uses on this machine."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

REPO_PORT = 8099
REPO_HOSTNAME = "bluegreen-repo"  # resolved by each host's /etc/hosts to its lab's gateway
HOST_TMPFS_SIZE = "1g"  # each host's writable layer; small enough that `disk-full` is real
MAX_INSTANCES = 10


@dataclass(frozen=True)
class LabPaths:
    """All lab paths. `root` holds the running lab; `cache` holds images reused across labs."""

    root: Path
    cache: Path
    instance: int = 0
    """Several labs can run side by side (BLUEGREEN_LAB_INSTANCE=0..9): each has its own
    directory, bridge, subnet, namespaces and frontend ports."""

    @classmethod
    def default(cls) -> LabPaths:
        raw = os.environ.get("BLUEGREEN_LAB_INSTANCE", "0")
        if not raw.isdigit() or int(raw) >= MAX_INSTANCES:
            from orchestrator.errors import BadInput

            raise BadInput(
                f"BLUEGREEN_LAB_INSTANCE={raw!r} is not a lab instance",
                hint=f"use 0..{MAX_INSTANCES - 1}",
            )
        instance = int(raw)
        suffix = "" if instance == 0 else str(instance)
        return cls(
            root=Path(os.environ.get("BLUEGREEN_LAB_DIR", f"/var/lib/bluegreen-lab{suffix}")),
            cache=Path(os.environ.get("BLUEGREEN_LAB_CACHE", "/var/cache/bluegreen-lab")),
            instance=instance,
        )

    @property
    def bridge(self) -> str:
        return f"bglab{self.instance}"

    @property
    def netns_prefix(self) -> str:
        return f"bglab{self.instance}-"

    @property
    def veth_prefix(self) -> str:
        return f"bgl{self.instance}v"

    @property
    def subnet_prefix(self) -> str:
        """First three octets of the lab's /24; hosts have no route beyond it."""
        return f"10.231.{self.instance}"

    @property
    def gateway(self) -> str:
        return f"{self.subnet_prefix}.1"

    @property
    def frontend_base_port(self) -> int:
        return 18080 + 100 * self.instance

    @property
    def haproxy_metrics_port(self) -> int:
        """HAProxy's built-in Prometheus exporter (`/metrics`), on loopback."""
        return self.frontend_base_port + 98

    @property
    def prometheus_port(self) -> int:
        """The lab's Prometheus server, on loopback."""
        return self.frontend_base_port + 99

    @property
    def prometheus(self) -> Path:
        return self.root / "prometheus"

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
    def nginx(self) -> Path:
        """`lab up --router nginx`: nginx.conf, the live file bluegreen owns, the pid file."""
        return self.root / "nginx"

    @property
    def haproxy(self) -> Path:
        return self.root / "haproxy"

    @property
    def haproxy_socket(self) -> Path:
        return self.haproxy / "admin.sock"

    @property
    def haproxy_operator_socket(self) -> Path:
        """A second stats socket at `level operator`: what `doctor` and the precheck must
        refuse (a flip needs level admin); only the tests use it."""
        return self.haproxy / "operator.sock"

    @property
    def map_file(self) -> Path:
        return self.haproxy / "bluegreen.map"

    @property
    def percent_map_file(self) -> Path:
        return self.haproxy / "bluegreen.percent.map"

    @property
    def exposed_map_file(self) -> Path:
        return self.haproxy / "bluegreen.exposed.map"

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

    @property
    def audit_key(self) -> Path:
        """The audit chain's key: outside the state directory, as in production."""
        return self.root / "audit" / "audit.key"

    @property
    def witness_file(self) -> Path:
        """The lab's append-only witness of the audit head."""
        return self.root / "audit" / "witness.log"

    @property
    def repo_gnupg(self) -> Path:
        """The GnuPG home holding the lab repository's signing key (private to the lab)."""
        return self.root / "gnupg"

    @property
    def repo_keyring(self) -> Path:
        """The lab repository's public key: what `advisories` and the hosts' apt verify with."""
        return self.root / "repo-keyring.gpg"
