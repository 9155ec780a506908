"""Router settings as they appear under `router:` in bluegreen.yml.

Discriminated by `kind`. Plain frozen dataclasses that check themselves on construction:
pydantic validates them as part of bluegreen.yml (types, unknown keys via
`__pydantic_config__`), and the rollback fast path builds them from a validated-config
snapshot without importing pydantic at all (`orchestrator.config_snapshot`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal

_STRICT: dict[str, Any] = {"extra": "forbid"}


class SettingError(ValueError):
    """A bad value of one field; `field` lets the config loader name `router.<field>` (a
    dotted path is taken from where the error is raised); `fix`, when given, is the fix."""

    def __init__(self, field_name: str, problem: str, *, fix: str | None = None) -> None:
        super().__init__(problem)
        self.field = field_name
        self.fix = fix


_HOST = re.compile(r"[A-Za-z0-9._:-]+")
_USER = re.compile(r"[A-Za-z0-9._-]+")


def _text(owner: object, name: str, *, max_len: int | None = None,
          pattern: re.Pattern[str] | None = None, what: str = "") -> None:
    value = getattr(owner, name)
    if not isinstance(value, str) or not value:
        raise SettingError(name, "must be non-empty text")
    if max_len is not None and len(value) > max_len:
        raise SettingError(name, f"at most {max_len} characters")
    if pattern is not None and not pattern.fullmatch(value):
        raise SettingError(name, f"{value!r} is not {what}")


def _number(owner: object, name: str, *, low: float, high: float,
            low_open: bool = False) -> None:
    value = getattr(owner, name)
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise SettingError(name, "must be a number")
    if value < low or value > high or (low_open and value == low):
        bound = f"greater than {low}" if low_open else f"at least {low}"
        raise SettingError(name, f"must be {bound} and at most {high}, got {value}")


@dataclass(frozen=True, kw_only=True)
class SSHTarget:
    """A remote load balancer reached over SSH (paramiko, strict host keys)."""

    __pydantic_config__: ClassVar[dict[str, Any]] = _STRICT
    host: str
    port: int = 22
    user: str = "root"
    key_file: str | None = None
    known_hosts: str
    """known_hosts file; strict checking always."""
    connect_timeout: float = 5.0

    def __post_init__(self) -> None:
        _text(self, "host", max_len=253, pattern=_HOST, what="a host name or address")
        _number(self, "port", low=1, high=65535)
        _text(self, "user", max_len=64, pattern=_USER, what="a plain user name")
        _text(self, "known_hosts")
        _number(self, "connect_timeout", low=0, high=120, low_open=True)


@dataclass(frozen=True, kw_only=True)
class HAProxySettings:
    """HAProxy driven through its runtime API.

    `socket` is `unix:///run/haproxy/admin.sock` or `tcp://127.0.0.1:9999`; with `ssh:` set,
    the unix socket path is on the remote load balancer and is reached with `socat` there.
    """

    __pydantic_config__: ClassVar[dict[str, Any]] = _STRICT
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

    def __post_init__(self) -> None:
        _text(self, "socket")
        if not self.socket.startswith(("unix://", "tcp://")):
            raise SettingError("socket", f"{self.socket!r} must start with unix:// or tcp://")
        _text(self, "map_file")
        _text(self, "server_state_file")
        _number(self, "drain_seconds", low=0, high=3600)
        _number(self, "timeout", low=0, high=60, low_open=True)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> HAProxySettings:
        """Rebuild from `dataclasses.asdict` output (the config snapshot)."""
        ssh = data.get("ssh")
        return cls(**{**data, "ssh": SSHTarget(**ssh) if ssh is not None else None})


@dataclass(frozen=True, kw_only=True)
class CommandRouterSettings:
    """A user script for load balancers bluegreen does not ship a driver for.

    Called as `SCRIPT live SERVICE`, `SCRIPT flip SERVICE SIDE`, `SCRIPT drain SERVICE SIDE`,
    `SCRIPT health SERVICE SIDE` and, with `counters: true`, `SCRIPT counters SERVICE SIDE`;
    exit 0 and one JSON object on stdout (see README). Bake must be able to observe the new
    side: every service needs a URL in `frontends` (bake probes it; with `confirm_header` a
    flip is also confirmed by a request there) or `counters: true`.
    """

    __pydantic_config__: ClassVar[dict[str, Any]] = _STRICT
    kind: Literal["command"]
    script: str
    timeout: float = 10.0
    frontends: dict[str, str] = field(default_factory=dict)
    """service -> URL of its frontend: bake probes it; flip confirmation (confirm_header)."""
    confirm_header: str | None = "X-Bluegreen-Backend"
    """Response header naming the side (`blue`, or `SERVICE_blue`) that served a request
    through the frontend; a flip is confirmed by it. null: no confirming request."""
    counters: bool = False
    """The script answers `counters SERVICE SIDE` with {"responses": N, "errors_5xx": M}."""
    allow_unpersisted: bool = False
    """Accept `"persisted": false` from `flip` (else the flip is reported incomplete)."""

    def __post_init__(self) -> None:
        _text(self, "script")
        _number(self, "timeout", low=0, high=600, low_open=True)
        if self.confirm_header is not None:
            _text(self, "confirm_header", max_len=200)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> CommandRouterSettings:
        return cls(**data)

    def unobservable(self, services: list[str]) -> list[str]:
        """Services whose new side bake could not observe (no frontend, no counters)."""
        if self.counters:
            return []
        return sorted(s for s in services if not self.frontends.get(s))


AnyRouterSettings = HAProxySettings | CommandRouterSettings


def router_settings_from_dict(data: dict[str, Any]) -> AnyRouterSettings:
    """Rebuild validated router settings from plain data (`dataclasses.asdict` output)."""
    if data.get("kind") == "command":
        return CommandRouterSettings.from_dict(data)
    return HAProxySettings.from_dict(data)
