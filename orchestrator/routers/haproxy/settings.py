"""Settings of the HAProxy driver (`router: {kind: haproxy, ...}` in bluegreen.yml)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar, Literal

from orchestrator.routers.settings import (
    HOST,
    STRICT,
    USER,
    SettingError,
    check_number,
    check_text,
)
from orchestrator.sides import Side

if TYPE_CHECKING:
    from orchestrator.routers.base import Router, RouterSettings


@dataclass(frozen=True, kw_only=True)
class SSHTarget:
    """A remote load balancer reached over SSH (paramiko, strict host keys)."""

    __pydantic_config__: ClassVar[dict[str, Any]] = STRICT
    host: str
    port: int = 22
    user: str = "root"
    key_file: str | None = None
    known_hosts: str
    """known_hosts file; strict checking always."""
    connect_timeout: float = 5.0

    def __post_init__(self) -> None:
        check_text(self, "host", max_len=253, pattern=HOST, what="a host name or address")
        check_number(self, "port", low=1, high=65535)
        check_text(self, "user", max_len=64, pattern=USER, what="a plain user name")
        check_text(self, "known_hosts")
        check_number(self, "connect_timeout", low=0, high=120, low_open=True)


@dataclass(frozen=True, kw_only=True)
class HAProxySettings:
    """HAProxy driven through its runtime API.

    `socket` is `unix:///run/haproxy/admin.sock` (or the bare path, as in haproxy.cfg's
    `stats socket` and socat) or `tcp://127.0.0.1:9999`; with `ssh:` set,
    the unix socket path is on the remote load balancer and is reached with `socat` there.
    """

    __pydantic_config__: ClassVar[dict[str, Any]] = STRICT
    kind: Literal["haproxy"]
    socket: str
    map_file: str
    """The file behind `map(...)` in use_backend."""
    server_state_file: str
    backend_template: str = "{service}_{side}"
    frontends: dict[str, str] = field(default_factory=dict)
    """service -> URL of its frontend, for flip confirmation."""
    confirm_header: str = "X-Bluegreen-Backend"
    """Response header carrying the backend name (`http-response set-header ... %b`)."""
    drain_seconds: float = 10.0
    timeout: float = 2.0
    ssh: SSHTarget | None = None
    percent_map_file: str | None = None
    """The map of exposure percents (progressive steps); default: `map_file` with
    `.percent` before its suffix (see `routers.haproxy.exposure`)."""
    exposed_map_file: str | None = None
    """The map of exposed backends; default: `map_file` with `.exposed`."""

    def __post_init__(self) -> None:
        check_text(self, "socket")
        if self.socket.startswith("/"):  # a bare path, as haproxy.cfg and socat write it
            object.__setattr__(self, "socket", f"unix://{self.socket}")
        if not self.socket.startswith(("unix://", "tcp://")):
            raise SettingError("socket", f"{self.socket!r} must be a path (/run/haproxy/admin"
                               ".sock), unix:///PATH or tcp://HOST:PORT")
        check_text(self, "map_file")
        check_text(self, "server_state_file")
        for name in ("percent_map_file", "exposed_map_file"):
            if getattr(self, name) is not None:
                check_text(self, name)
        check_number(self, "drain_seconds", low=0, high=3600)
        check_number(self, "timeout", low=0, high=60, low_open=True)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> HAProxySettings:
        """Rebuild from `dataclasses.asdict` output (the config snapshot)."""
        ssh = data.get("ssh")
        return cls(**{**data, "ssh": SSHTarget(**ssh) if ssh is not None else None})

    def percent_map(self) -> str:
        return self.percent_map_file or beside_map(self.map_file, "percent")

    def exposed_map(self) -> str:
        return self.exposed_map_file or beside_map(self.map_file, "exposed")

    def backend_name(self, service: str, side: Side) -> str:
        return self.backend_template.format(service=service, side=side)

    def flip_commands(self, service: str, to_side: Side) -> list[str]:
        backend = self.backend_name(service, to_side)
        return [f"show map {self.map_file}",
                f"set map {self.map_file} {service} {backend}",
                f"write {self.map_file} and {self.server_state_file}"]

    def check_services(self, services: Sequence[str]) -> None:
        """Always observable: bake reads the backends' counters (`show stat`)."""

    def make_router(self) -> Router:
        from orchestrator.routers.haproxy.router import HAProxyRouter

        return HAProxyRouter(self)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def beside_map(map_file: str, what: str) -> str:
    """/etc/haproxy/bluegreen.map -> /etc/haproxy/bluegreen.WHAT.map"""
    head, dot, tail = map_file.rpartition(".")
    if dot and "/" not in tail:
        return f"{head}.{what}.{tail}"
    return f"{map_file}.{what}"


if TYPE_CHECKING:  # mypy proves the settings keep the contract
    _contract: type[RouterSettings] = HAProxySettings
