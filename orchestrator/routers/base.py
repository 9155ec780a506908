"""The router contract: what the engine may ask of any traffic switch (`Router`) and of
its settings (`RouterSettings`).

A driver is a folder (`haproxy/`, `command/`) holding its router, its settings and what
else it needs; `registry.py` finds it by `kind`. Kept free of heavy imports: the rollback
fast path imports this module. Every driver raises `orchestrator.errors.RouterError` when
the load balancer refuses, cannot be reached or gives an answer it cannot interpret; it
never guesses.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, Self

from orchestrator.sides import Side


@dataclass(frozen=True)
class FlipResult:
    """What a flip did. `from_side` is None when the service had no routing entry yet."""

    service: str
    from_side: Side | None
    to_side: Side
    seconds: float
    confirmed_by: list[str] = field(default_factory=list)
    """How the new routing was checked, e.g. ["map-readback", "request"]."""
    persisted: bool = False
    """True when the change survives a reload/restart of the load balancer."""


@dataclass(frozen=True)
class DrainResult:
    """Sessions still open on `side` when drain returned (0 means drained)."""

    service: str
    side: Side
    sessions_left: int
    seconds: float

    @property
    def drained(self) -> bool:
        return self.sessions_left == 0


@dataclass(frozen=True)
class ServerHealth:
    """One server of a side as the load balancer sees it.

    `status` is the load balancer's word (HAProxy: UP, DOWN, MAINT, DRAIN, NOLB,
    "UP 1/3", "no check"); `check_status` the last health check result (L7OK, L4CON, ...).
    """

    name: str
    status: str
    check_status: str = ""
    sessions: int = 0

    @property
    def up(self) -> bool:
        """Takes new traffic: UP (also while going down, "UP 1/3") or unchecked."""
        return self.status.startswith("UP") or self.status == "no check"


@dataclass(frozen=True)
class SideHealth:
    service: str
    side: Side
    backend: str
    servers: list[ServerHealth] = field(default_factory=list)

    @property
    def up_servers(self) -> list[ServerHealth]:
        return [server for server in self.servers if server.up]

    @property
    def healthy(self) -> bool:
        """At least one server takes traffic."""
        return bool(self.up_servers)


@dataclass(frozen=True)
class TrafficCounters:
    """Cumulative HTTP responses of one side's backend, as the load balancer counted them
    for every client (not only bluegreen's own probes)."""

    responses: int
    errors_5xx: int
    response_ms: float | None = None
    """The backend's average response time as the load balancer keeps it, in ms (HAProxy's
    `rtime`: a sliding average, avg += (t - avg) / 512 per response; the analysis solves a
    window's mean from two readings); None: not counted."""

    def since(self, earlier: TrafficCounters) -> TrafficCounters:
        """The difference to an earlier reading (a counter reset counts from zero; an
        average has no difference: the analysis reads `response_ms` of both readings)."""
        if self.responses < earlier.responses or self.errors_5xx < earlier.errors_5xx:
            return self
        return TrafficCounters(self.responses - earlier.responses,
                               self.errors_5xx - earlier.errors_5xx)

    def as_dict(self) -> dict[str, float]:
        counted: dict[str, float] = {"responses": self.responses,
                                     "errors_5xx": self.errors_5xx}
        if self.response_ms is not None:
            counted["response_ms"] = self.response_ms
        return counted


@dataclass(frozen=True)
class Check:
    """One thing a first rollout depends on, checked (`bluegreen doctor`, the precheck).

    `ok`: True passed, False failed, None could not be told (shown as unknown; not a
    failure). `fix`: one line saying what to change when it failed (or is unknown)."""

    name: str
    ok: bool | None
    detail: str
    fix: str = ""

    @property
    def failed(self) -> bool:
        return self.ok is False

    def as_dict(self) -> dict[str, Any]:
        return {"name": self.name, "ok": self.ok, "detail": self.detail, "fix": self.fix}


@dataclass(frozen=True)
class Exposure:
    """A progressive exposure at the router: `percent` % of new requests (0..99) go to the
    standby `side`, the live side takes the rest; requests carrying the preview header
    (`X-Bluegreen-Preview: 1`) or cookie (`bluegreen_preview=1`) always go to `side`.
    `percent` 0 is a preview only."""

    side: Side
    percent: int

    @property
    def preview(self) -> bool:
        return self.percent == 0

    def as_dict(self) -> dict[str, Any]:
        return {"side": self.side, "percent": self.percent, "preview": self.preview}


PREVIEW_HEADER = "X-Bluegreen-Preview"
"""The request header (value `1`) that sends a request to the exposed side."""
PREVIEW_COOKIE = "bluegreen_preview"
"""The cookie (value `1`) that does the same, for a browser: `Cookie: bluegreen_preview=1`
(set it in the browser's developer tools, or from a page of your own on the site)."""


class Exposing(Protocol):
    """A router that can expose a standby to a share of traffic without moving the live
    side (optional: the kernel refuses an exposure on a router without it, and reads no
    exposure from it). `flip` does not change the exposure: the kernel clears it first."""

    def expose(self, service: str, side: Side | None, percent: int) -> FlipResult:
        """Send `percent` % of new requests (0..99; 0: preview requests only) to `side`
        (None: clear the exposure, all traffic on the live side), read it back, persist it
        (a reload keeps it); RouterError when not done, FlipIncomplete (persisted=False)
        when it is set in memory but not persisted. `FlipResult.to_side` is the live side."""
        ...

    def exposure(self, service: str) -> Exposure | None:
        """The exposure the router applies now (None: none, or the router is not set up
        for exposures); RouterError when it cannot be read."""
        ...


def exposing(router: object) -> Exposing | None:
    """`router` when it implements `Exposing`, else None."""
    if callable(getattr(router, "expose", None)) and callable(getattr(router, "exposure", None)):
        return router  # type: ignore[return-value]
    return None


class SelfChecking(Protocol):
    """A router that can check its own setup beyond the `Router` contract (optional: a
    driver without it gets only the contract's checks from `bluegreen doctor`)."""

    def readiness(self, services: Sequence[str]) -> list[Check]:
        """What this load balancer's setup needs for `services` to flip (the socket's
        rights, the map, the files a flip persists): one `Check` each; never raises."""
        ...


class Router(Protocol):
    """A traffic switch for blue/green services.

    Implementations are not required to be thread-safe: use one router per thread.
    """

    def live(self, service: str) -> Side:
        """The side that takes traffic now; RouterError if the router cannot tell."""
        ...

    def flip(self, service: str, to_side: Side) -> FlipResult:
        """Send all new traffic to `to_side`, persist it, confirm it; RouterError if not."""
        ...

    def drain(self, service: str, side: Side, deadline_s: float) -> DrainResult:
        """Wait up to `deadline_s` seconds for `side` to have no sessions; never raises on
        timeout (the caller decides what a non-empty result means)."""
        ...

    def health(self, service: str, side: Side) -> SideHealth:
        """Per-server status of `side`."""
        ...

    def counters(self, service: str, side: Side) -> TrafficCounters | None:
        """Responses and 5xx responses `side` has served so far; None if the load balancer
        cannot tell (bake then watches its own probes only)."""
        ...

    def close(self) -> None:
        """Release connections; the router may not be used afterwards."""
        ...


class RouterSettings(Protocol):
    """A driver's settings under `router:` in bluegreen.yml: a frozen dataclass that checks
    itself on construction (raising `settings.SettingError`), with `__pydantic_config__ =
    settings.STRICT` and `kind: Literal["NAME"]` (the discriminator of the config's router
    union, which `registry.py` assembles from every driver's settings class)."""

    @property
    def kind(self) -> str: ...

    @property
    def frontends(self) -> Mapping[str, str]:
        """service -> URL of its frontend (bake probes it; flips are confirmed there)."""
        ...

    @property
    def confirm_header(self) -> str | None:
        """Response header naming what served a request through a frontend; None: none."""
        ...

    @property
    def drain_seconds(self) -> float:
        """How long a rollout waits, after its flip, for the old side's sessions to end."""
        ...

    def backend_name(self, service: str, side: Side) -> str | None:
        """What `confirm_header` says when `side` serves `service`; None: not checked."""
        ...

    def flip_commands(self, service: str, to_side: Side) -> list[str]:
        """What a flip does at the load balancer, as `bluegreen plan` shows it."""
        ...

    def check_services(self, services: Sequence[str]) -> None:
        """SettingError (its field a dotted path under `router`) when these settings cannot
        serve `services` (e.g. bake could not observe a new side)."""
        ...

    def make_router(self) -> Router:
        """The driver for these settings (its modules imported only now)."""
        ...

    def as_dict(self) -> dict[str, Any]:
        """Plain data that `from_dict` rebuilds (the validated-config snapshot)."""
        ...

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Self: ...
