"""bluegreen.yml: the pydantic models of the whole file.

Read it with `orchestrator.config.loaded.load_config()`, never by validating these directly:
the loader turns every problem into one `BadInput` naming file, field and fix.
"""

from __future__ import annotations

import functools
import operator
from typing import TYPE_CHECKING, Annotated, Any, Literal

from pydantic import AfterValidator, BeforeValidator, Field, model_validator

from orchestrator.advisories.settings import AdvisorySettings
from orchestrator.config.bake import MAX_STEPS, AnalysisSettings, BakeStep, check_steps
from orchestrator.config.types import (
    SAFE_USER_RE,
    GroupName,
    NonEmptyStr,
    PackageName,
    PackageVersion,
    Serial,
    ServiceName,
    StrictModel,
    UrlPath,
    no_bool,
)
from orchestrator.processes import MAX_OUTPUT
from orchestrator.routers.base import RouterSettings
from orchestrator.routers.registry import settings_classes
from orchestrator.routers.settings import SettingError


def _router_union() -> Any:
    """The type of `router:`: every driver's settings class (`routers.registry`, built-in
    and installed), discriminated by `kind`."""
    classes = list(settings_classes().values())
    if len(classes) == 1:
        return classes[0]
    return Annotated[functools.reduce(operator.or_, classes), Field(discriminator="kind")]


if TYPE_CHECKING:  # mypy checks the code against the contract every driver keeps
    RouterField = RouterSettings
else:
    RouterField = _router_union()


class SSHSettings(StrictModel):
    """How bluegreen (Ansible, testinfra) reaches the hosts. Host keys are always checked."""

    user: str = Field(default="root", pattern=SAFE_USER_RE.pattern)
    private_key_file: NonEmptyStr | None = None
    known_hosts: NonEmptyStr = Field(description="known_hosts file; strict checking is always on")
    ssh_config: NonEmptyStr | None = None
    connect_timeout: float = Field(default=10.0, gt=0, le=300)
    max_output_mb: int = Field(
        default=MAX_OUTPUT // 2**20, ge=1, le=1024,
        description="cap on one command's answer from a host (probes, dpkg reads): a host "
        "over it fails that read with 'output too large'",
    )
    become: bool = Field(
        default=False,
        description="become root with `sudo -n` (non-interactive: a password prompt is an "
        "error) for everything bluegreen runs on the hosts: the patch playbook (Ansible's "
        "become), probes, drift, the security fingerprint and the package reads; needed "
        "when `user` is not root",
    )


def _state_url(value: str) -> str:
    from orchestrator.state.registry import parse_state_url

    parse_state_url(value)  # ValueError: names the problem and the URL forms
    return value


class StateSettings(StrictModel):
    """Where the state store lives: a SQLite file (`path`, relative to the config file's
    directory), or a URL (`url`: postgresql://USER@HOST/DB for a team, sqlite:///PATH)."""

    path: NonEmptyStr = ".bluegreen/state.db"
    url: Annotated[str, AfterValidator(_state_url)] | None = Field(
        default=None,
        description="postgresql://USER@HOST[:PORT]/DB[?sslmode=...] (password: PGPASSWORD or "
        "~/.pgpass, never here) or sqlite:///PATH; replaces `path`",
    )

    @model_validator(mode="after")
    def _one_location(self) -> StateSettings:
        if self.url is not None and "path" in self.model_fields_set:
            raise ValueError("give either state.path (a SQLite file) or state.url, not both")
        return self


def _syslog_word(value: Any) -> Any:
    """YAML reads an unquoted `off` (and `no`, `false`) as a boolean: mean `off`, as written."""
    if value is False:
        return "off"
    if value is True:
        raise ValueError("`on`/`true` is not a syslog target: write local, off, or "
                         "tcp://HOST:PORT")
    return value


def _syslog_target(value: str) -> str:
    if value in ("local", "off"):
        return value
    from orchestrator.state.witness import parse_tcp_address

    parse_tcp_address(value)  # ValueError: says which forms are allowed
    return value


SyslogTarget = Annotated[str, BeforeValidator(_syslog_word), AfterValidator(_syslog_target)]


class WitnessConfig(StrictModel):
    """Where the audit head is written after every command that appended records."""

    syslog: SyslogTarget | None = Field(
        default=None,
        description="local (/dev/log), off, or tcp://HOST:PORT (RFC 5424); default: local, "
        "or off when a `file` witness is set")
    syslog_copy: NonEmptyStr | None = None
    file: NonEmptyStr | None = None
    timeout_seconds: float = Field(default=1.0, gt=0, le=10)


class AuditConfig(StrictModel):
    """The audit key file (default: audit.key beside the state database) and witnesses."""

    key_file: NonEmptyStr | None = None
    witness: WitnessConfig = Field(default_factory=WitnessConfig)


class SidesConfig(StrictModel):
    """The Ansible inventory groups that hold each side of a service."""

    blue: GroupName
    green: GroupName

    @model_validator(mode="after")
    def _sides_differ(self) -> SidesConfig:
        if self.blue == self.green:
            raise ValueError(
                f"blue and green are both the inventory group {self.blue!r}: the two sides must be"
                " different groups (e.g. web_blue and web_green)"
            )
        return self


class PackageSpec(StrictModel):
    """One package to install or upgrade; `version=None` means the newest available."""

    name: PackageName
    version: PackageVersion | None = None

    def __str__(self) -> str:
        return self.name if self.version is None else f"{self.name}={self.version}"


class PatchSettings(StrictModel):
    """What to change on the standby side, and how carefully."""

    playbook: NonEmptyStr = "playbooks/patch.yml"
    packages: list[PackageSpec] = Field(default_factory=list, max_length=1000)
    security_updates: bool = False
    serial: Serial = "100%"  # the standby takes no traffic: patch it all at once by default
    max_fail_percentage: int = Field(default=0, ge=0, le=100)
    timeout_seconds: int = Field(default=1800, ge=1, le=86400)
    rebuild_playbook: NonEmptyStr | None = Field(
        default=None,
        description="`bluegreen rebuild`: a plain Ansible playbook that re-images or "
        "redeploys the hosts of `target` (the standby side), e.g. playbooks/lab-rebuild.yml",
    )

    @model_validator(mode="after")
    def _one_kind_of_patch(self) -> PatchSettings:
        if self.packages and self.security_updates:
            raise ValueError(
                "set only one of `packages` (a list of packages) or `security_updates: true`,"
                " not both"
            )
        if not self.packages and not self.security_updates:
            raise ValueError(
                "nothing to patch: set `packages` (a non-empty list of {name, version}) or"
                " `security_updates: true`"
            )
        names = [p.name for p in self.packages]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"package listed more than once: {', '.join(dupes)}")
        return self


class HttpCheck(StrictModel):
    """An HTTP health check run against each host of a side; `{host}` is the host address."""

    url: str = Field(min_length=1, max_length=2048)
    expect_status: int = Field(default=200, ge=100, le=599)
    body_contains: str | None = None
    max_latency_ms: int = Field(default=2000, ge=1, le=600_000)

    @model_validator(mode="after")
    def _url_template(self) -> HttpCheck:
        if not self.url.startswith(("http://", "https://")):
            raise ValueError(f"url must start with http:// or https://, got {self.url!r}")
        if "{host}" not in self.url:
            raise ValueError(
                f"url must contain the placeholder {{host}}, e.g. 'http://{{host}}:8080/health',"
                f" got {self.url!r}"
            )
        try:
            self.url.format(host="h")
        except (KeyError, IndexError, ValueError) as exc:
            raise ValueError(
                f"url may use only the placeholder {{host}} (write '{{{{' for a literal brace),"
                f" got {self.url!r}"
            ) from exc
        if any(c.isspace() for c in self.url):
            raise ValueError(f"url must not contain spaces, got {self.url!r}")
        return self

    def url_for(self, address: str) -> str:
        """The check's URL for one host (IPv6 addresses are bracketed)."""
        host = f"[{address}]" if ":" in address and not address.startswith("[") else address
        return self.url.format(host=host)


class BakeSettings(StrictModel):
    """Watching the new live side through the load balancer after a flip; with `steps`
    (config/bake.py), exposed step by step and judged against its twin before it."""

    seconds: float = Field(default=30.0, ge=0, le=86400)
    interval_seconds: float = Field(default=1.0, gt=0, le=3600)
    url_path: UrlPath = "/"
    max_failures: int = Field(default=3, ge=1, le=10000, description="consecutive failures")
    max_error_ratio: float = Field(
        default=0.05,
        ge=0,
        le=1,
        description="share of 5xx among ALL responses of the new side at the load balancer"
        " (real users' traffic too) above which bake rolls back",
    )
    min_responses: int = Field(
        default=20, ge=1, le=10_000_000,
        description="responses the load balancer must have counted before the ratio is judged",
    )
    steps: list[BakeStep] = Field(default_factory=list, max_length=MAX_STEPS)
    analysis: AnalysisSettings = Field(default_factory=AnalysisSettings)

    @model_validator(mode="after")
    def _steps(self) -> BakeSettings:
        check_steps(self.steps)
        return self

    @property
    def exposure_steps(self) -> list[BakeStep]:
        """The steps before the flip (empty: today's bake)."""
        return self.steps[:-1]

    @property
    def final_seconds(self) -> float:
        """How long the new live side is watched after the flip: the last step's hold."""
        return self.steps[-1].seconds if self.steps else self.seconds


class DriftSettings(StrictModel):
    """Drift detection: the two sides must be mirror images except for the patch."""

    files: list[NonEmptyStr] = Field(
        default_factory=lambda: ["/etc/ssh/sshd_config"],
        max_length=500,
        description="absolute paths whose sha256 must match across hosts",
    )
    mode: Literal["fail", "warn", "off"] = "fail"
    security: bool = Field(
        default=True,
        description="also compare the security fingerprint (authorized keys, users, sudoers, "
        "setuid files, cron, timers, kernel modules, listeners, sshd and PAM config; "
        "orchestrator/probes/security.py); needs root on the hosts",
    )

    @model_validator(mode="after")
    def _absolute(self) -> DriftSettings:
        bad = [f for f in self.files if not f.startswith("/") or any(c.isspace() for c in f)]
        if bad:
            raise ValueError(f"drift.files must be absolute paths without spaces, got {bad}")
        return self


FingerprintKind = Literal[
    "package", "unit-enabled", "unit-running", "port", "file", "authorized-key", "user",
    "group", "sudoers", "setuid", "cron", "timer", "kernel-module", "listener", "sshd-config",
    "pam",
]
"""The kinds of a host's fingerprint (orchestrator/probes/drift.py KINDS; a test keeps them
equal)."""


class WatchSettings(StrictModel):
    """`bluegreen watch`: the live side against its approved baseline, every `interval`."""

    interval: float = Field(default=60.0, ge=1, le=86_400, description="seconds between checks")
    webhooks: list[NonEmptyStr] = Field(
        default_factory=list, max_length=20,
        description="http(s) URLs that get a JSON `deviation` event",
    )
    quarantine_on: list[FingerprintKind] = Field(
        default_factory=list, max_length=20,
        description="with `watch --quarantine`: a deviation of one of these kinds (e.g. "
        "authorized-key, setuid, listener, user, sudoers) quarantines the live side",
    )

    @model_validator(mode="after")
    def _urls(self) -> WatchSettings:
        bad = [u for u in self.webhooks
               if not u.startswith(("http://", "https://")) or any(c.isspace() for c in u)]
        if bad:
            raise ValueError(f"watch.webhooks must be http:// or https:// URLs without "
                             f"spaces, got {bad}")
        return self


DEFAULT_SITE = "default"
"""The site of a service that names none: the top-level inventory, ssh and router."""


class SiteConfig(StrictModel):
    """One site (`sites.NAME`): the hosts one orchestrator machine can reach and their load
    balancer. A worker (`bluegreen worker --site NAME`) runs the site's services with these
    settings; each one left out is the top-level one."""

    inventory: NonEmptyStr | None = Field(
        default=None, description="the site's Ansible inventory (default: `inventory`)")
    ssh: SSHSettings | None = Field(
        default=None, description="how the site's machine reaches its hosts (default: `ssh`)")
    router: RouterField | None = Field(
        default=None, description="the site's load balancer (default: `router`)")
    max_parallel: int | None = Field(
        default=None, ge=1, le=1000,
        description="at most this many of the site's services in flight at once, counted "
        "across all its workers (default: no limit beyond the waves' max_parallel)")


class ServiceConfig(StrictModel):
    """One service: its two sides, how to patch it, and how to tell it is healthy."""

    site: ServiceName = Field(
        default=DEFAULT_SITE,
        description="the site (a key of `sites:`) whose workers patch this service")
    sides: SidesConfig
    patch: PatchSettings
    health: list[HttpCheck] = Field(default_factory=list, max_length=100)
    fixed_versions: dict[PackageName, PackageVersion] = Field(default_factory=dict)
    checks: list[dict[str, Any]] = Field(
        default_factory=list,
        max_length=200,
        description="built-in probe checks (kind: http|service|listening|package|...)",
    )
    suites: list[NonEmptyStr] = Field(
        default_factory=list,
        max_length=100,
        description="pytest-testinfra files (relative to the config file) run by the gate",
    )
    drift: DriftSettings = Field(default_factory=DriftSettings)
    bake: BakeSettings = Field(default_factory=BakeSettings)
    watch: WatchSettings = Field(default_factory=WatchSettings)


class BluegreenConfig(StrictModel):
    """The whole of bluegreen.yml."""

    version: Annotated[Literal[1], BeforeValidator(no_bool)]  # YAML `true` is not 1
    inventory: NonEmptyStr
    ssh: SSHSettings
    state: StateSettings = Field(default_factory=StateSettings)
    audit: AuditConfig = Field(default_factory=AuditConfig)
    router: RouterField
    services: dict[ServiceName, ServiceConfig] = Field(min_length=1)
    sites: dict[ServiceName, SiteConfig] = Field(
        default_factory=dict, max_length=1000,
        description="sites beside the implicit `default` one (the top-level inventory, ssh "
        "and router); see SiteConfig")
    reports_dir: NonEmptyStr = "reports"
    advisories: AdvisorySettings = Field(default_factory=AdvisorySettings)
    """CVE feeds and the apt repositories the hosts use (`exposure`, `campaign new`, the
    `cves` check); see orchestrator/advisories/settings.py."""

    @model_validator(mode="after")
    def _cross_checks(self) -> BluegreenConfig:
        known = sorted({DEFAULT_SITE, *self.sites})
        for name, service in sorted(self.services.items()):
            if service.site not in known:
                raise SettingError(
                    f"services.{name}.site",
                    f"unknown site {service.site!r} (sites: {', '.join(known)})",
                    fix=f"add `{service.site}:` under `sites:`, or name one of: "
                        + ", ".join(known))
        for field, router, served in self._routers():
            unknown = sorted(set(router.frontends) - set(served))
            if unknown:
                where = "are not under `services:`" if field == "router" and not self.sites \
                    else "are not services of this router's sites"
                raise ValueError(
                    f"{field}.frontends names services that {where}:"
                    f" {', '.join(unknown)} (services: {', '.join(served) or 'none'})"
                )
            try:
                router.check_services(served)
            except SettingError as exc:
                if field == "router":
                    raise
                raise SettingError(f"{field}.{exc.field.removeprefix('router.')}",
                                   str(exc), fix=exc.fix) from None
        return self

    def _routers(self) -> list[tuple[str, RouterSettings, list[str]]]:
        """(field, router settings, the services it serves): the top-level router serves
        the services of every site without a router of its own."""
        own = {name: site.router for name, site in self.sites.items() if site.router}
        out: list[tuple[str, RouterSettings, list[str]]] = [(
            "router", self.router,
            sorted(s for s, c in self.services.items() if c.site not in own))]
        for name, router in sorted(own.items()):
            out.append((f"sites.{name}.router", router,
                        sorted(s for s, c in self.services.items() if c.site == name)))
        return out
