"""Settings of the command driver (`router: {kind: command, ...}` in bluegreen.yml)."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar, Literal

from orchestrator.routers.settings import STRICT, SettingError, check_number, check_text
from orchestrator.sides import Side

if TYPE_CHECKING:
    from orchestrator.routers.base import Router, RouterSettings

_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,127}")


@dataclass(frozen=True, kw_only=True)
class CommandRouterSettings:
    """A user script for load balancers bluegreen does not ship a driver for.

    Called as `SCRIPT live SERVICE`, `SCRIPT flip SERVICE SIDE`, `SCRIPT drain SERVICE SIDE`,
    `SCRIPT health SERVICE SIDE` and, with `counters: true`, `SCRIPT counters SERVICE SIDE`;
    exit 0 and one JSON object on stdout (see README). Bake must be able to observe the new
    side: every service needs a URL in `frontends` (bake probes it; with `confirm_header` a
    flip is also confirmed by a request there) or `counters: true`.
    """

    __pydantic_config__: ClassVar[dict[str, Any]] = STRICT
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
    pass_env: list[str] = field(default_factory=list)
    """Names of variables of bluegreen's environment the script gets too (e.g. the load
    balancer's API token); otherwise it gets only the minimal environment."""

    def __post_init__(self) -> None:
        check_text(self, "script")
        bad = [n for n in self.pass_env if not _ENV_NAME.fullmatch(n)]
        if bad:
            raise SettingError(
                "router.pass_env", f"not an environment variable name: {bad[0]!r}",
                fix="list names such as LB_API_TOKEN (letters, digits, '_')",
            )
        check_number(self, "timeout", low=0, high=600, low_open=True)
        if self.confirm_header is not None:
            check_text(self, "confirm_header", max_len=200)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> CommandRouterSettings:
        return cls(**data)

    @property
    def drain_seconds(self) -> float:
        """The script's own `drain` waits; a rollout gives it up to 10 s."""
        return 10.0

    def backend_name(self, service: str, side: Side) -> None:
        """Any name the header gives is checked by the flip's confirmation, not by bake."""
        return None

    def flip_commands(self, service: str, to_side: Side) -> list[str]:
        return [f"{self.script} flip {service} {to_side}"]

    def check_services(self, services: Sequence[str]) -> None:
        """Bake must be able to observe a new side: a frontend URL per service, or
        `counters: true`."""
        blind = [] if self.counters else sorted(s for s in services if not self.frontends.get(s))
        if blind:
            raise SettingError(
                "router.frontends",
                f"no frontend URL for {', '.join(blind)}, and `counters` is off: bake could"
                " not see a new side fail, so no automatic rollback could ever happen",
                fix="add the URL of each service's frontend under `router.frontends:` (e.g. "
                + ", ".join(f"`{s}: http://lb.example.net/`" for s in blind[:2])
                + "; bake probes it), or set `router.counters: true` if the script answers"
                " `counters SERVICE SIDE`",
            )

    def make_router(self) -> Router:
        from orchestrator.routers.command.router import CommandRouter

        return CommandRouter(self)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


if TYPE_CHECKING:  # mypy proves the settings keep the contract
    _contract: type[RouterSettings] = CommandRouterSettings
