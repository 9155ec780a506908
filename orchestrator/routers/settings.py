"""Router settings as they appear under `router:` in bluegreen.yml.

Discriminated by `kind`. Kept free of heavy imports: config validation and the
rollback fast path both import this module.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, defer_build=True)


class SSHTarget(_Strict):
    """A remote load balancer reached over SSH (paramiko, strict host keys)."""

    host: str = Field(min_length=1, max_length=253, pattern=r"^[A-Za-z0-9._:-]+$")
    port: int = Field(default=22, ge=1, le=65535)
    user: str = Field(default="root", min_length=1, max_length=64, pattern=r"^[A-Za-z0-9._-]+$")
    key_file: str | None = None
    known_hosts: str = Field(min_length=1, description="known_hosts file; strict checking always")
    connect_timeout: float = Field(default=5.0, gt=0, le=120)


class HAProxySettings(_Strict):
    """HAProxy driven through its runtime API.

    `socket` is `unix:///run/haproxy/admin.sock` or `tcp://127.0.0.1:9999`; with `ssh:` set,
    the unix socket path is on the remote load balancer and is reached with `socat` there.
    """

    kind: Literal["haproxy"]
    socket: str = Field(min_length=1, pattern=r"^(unix://|tcp://)")
    map_file: str = Field(min_length=1, description="file behind `map(...)` in use_backend")
    server_state_file: str = Field(min_length=1)
    backend_template: str = Field(default="{service}_{side}")
    frontends: dict[str, str] = Field(
        default_factory=dict, description="service -> URL of its frontend, for flip confirmation"
    )
    confirm_header: str = Field(
        default="X-Bluegreen-Backend",
        description="response header carrying the backend name (`http-response set-header ... %b`)",
    )
    drain_seconds: float = Field(default=10.0, ge=0, le=3600)
    timeout: float = Field(default=2.0, gt=0, le=60)
    ssh: SSHTarget | None = None


class CommandRouterSettings(_Strict):
    """A user script for load balancers bluegreen does not ship a driver for.

    Called as `SCRIPT live SERVICE`, `SCRIPT flip SERVICE SIDE`, `SCRIPT drain SERVICE SIDE`,
    `SCRIPT health SERVICE SIDE`; exit 0 and one JSON object on stdout (see README).
    """

    kind: Literal["command"]
    script: str = Field(min_length=1)
    timeout: float = Field(default=10.0, gt=0, le=600)


RouterSettings = Annotated[HAProxySettings | CommandRouterSettings, Field(discriminator="kind")]
