"""Settings of the nginx driver (`router: {kind: nginx, ...}` in bluegreen.yml)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar, Literal

from orchestrator.routers.settings import STRICT, SettingError, check_number, check_text
from orchestrator.sides import Side

if TYPE_CHECKING:
    from orchestrator.routers.base import Router, RouterSettings


@dataclass(frozen=True, kw_only=True)
class NginxSettings:
    """nginx (open source) in front of the two pools of each service.

    nginx has no runtime API: bluegreen owns one file, `live_file`, included in the `http`
    block, holding one `map` per service that names its live upstream group
    (`map $host $bluegreen_web { default web_green; }`); the service's `proxy_pass
    http://$bluegreen_web;` follows it. A flip rewrites that file (atomically, under a lock),
    checks the whole config with `nginx -t`, and reloads gracefully (`nginx -s reload`: old
    workers finish their requests). The upstream groups are named by `upstream_template`.
    """

    __pydantic_config__: ClassVar[dict[str, Any]] = STRICT
    kind: Literal["nginx"]
    live_file: str
    """The file bluegreen writes (`include` it in nginx's `http` block)."""
    conf: str = "/etc/nginx/nginx.conf"
    """nginx's main config (`nginx -t -c CONF`, `nginx -s reload -c CONF`)."""
    nginx: str = "/usr/sbin/nginx"
    upstream_template: str = "{service}_{side}"
    frontends: dict[str, str] = field(default_factory=dict)
    """service -> URL of its frontend: live side read back, flips confirmed, bake probes."""
    confirm_header: str = "X-Bluegreen-Backend"
    """`add_header X-Bluegreen-Backend $proxy_host always;` in the service's location."""
    access_log: str | None = None
    """A log in `log_format bluegreen '$proxy_host $status $upstream_response_time';`:
    the bake's counters (responses and 5xx per upstream). None: no counters."""
    drain_seconds: float = 10.0
    timeout: float = 5.0

    def __post_init__(self) -> None:
        for name in ("live_file", "conf", "nginx"):
            check_text(self, name)
            if not str(getattr(self, name)).startswith("/"):
                raise SettingError(name, f"{getattr(self, name)!r} must be an absolute path")
        check_text(self, "upstream_template")
        if "{service}" not in self.upstream_template or "{side}" not in self.upstream_template:
            raise SettingError("upstream_template", "must contain {service} and {side}")
        check_text(self, "confirm_header", max_len=200)
        if self.access_log is not None and not self.access_log.startswith("/"):
            raise SettingError("access_log", "must be an absolute path")
        check_number(self, "drain_seconds", low=0, high=3600)
        check_number(self, "timeout", low=0, high=120, low_open=True)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> NginxSettings:
        return cls(**data)

    def backend_name(self, service: str, side: Side) -> str:
        return self.upstream_template.format(service=service, side=side)

    def flip_commands(self, service: str, to_side: Side) -> list[str]:
        return [
            f"write {self.live_file}: {service} -> {self.backend_name(service, to_side)}",
            f"{self.nginx} -t -c {self.conf}",
            f"{self.nginx} -s reload -c {self.conf}",
        ]

    def check_services(self, services: Sequence[str]) -> None:
        """The live side is read back through each service's frontend (nginx has no API
        to ask), so every service needs one."""
        blind = sorted(s for s in services if not self.frontends.get(s))
        if blind:
            raise SettingError(
                "router.frontends",
                f"no frontend URL for {', '.join(blind)}: with nginx the live side is read "
                "back by a request through the frontend",
                fix="add the URL of each service's frontend under `router.frontends:`",
            )

    def make_router(self) -> Router:
        from orchestrator.routers.nginx.router import NginxRouter

        return NginxRouter(self)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


if TYPE_CHECKING:  # mypy proves the settings keep the contract
    _contract: type[RouterSettings] = NginxSettings
