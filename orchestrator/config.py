"""bluegreen.yml: pydantic models, loading, and clear errors.

`load_config()` is the only way the rest of the code should read a config file. Every problem
with the file (missing, too big, not UTF-8, bad YAML, wrong shape, unknown keys, bad values)
comes back as one `BadInput` that names the file, the field path and how to fix it. Pydantic's
own error dump never reaches the user.

Kept light: imports pydantic and PyYAML only (the rollback fast path loads the config too).
"""

from __future__ import annotations

import dataclasses
import difflib
import hashlib
import re
import stat
import types
import typing
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    model_validator,
)

from orchestrator.config_snapshot import (
    CONFIG_ENV,
    DEFAULT_CONFIG_NAME,
    MAX_CONFIG_BYTES,
    config_path,
)
from orchestrator.errors import BadInput, unknown_service
from orchestrator.routers.settings import CommandRouterSettings, HAProxySettings, SettingError

if typing.TYPE_CHECKING:
    from orchestrator.state.audit_settings import AuditSettings

__all__ = [
    "CONFIG_ENV",
    "DEFAULT_CONFIG_NAME",
    "MAX_CONFIG_BYTES",
    "BakeSettings",
    "BluegreenConfig",
    "HttpCheck",
    "LoadedConfig",
    "PackageSpec",
    "PatchSettings",
    "SSHSettings",
    "ServiceConfig",
    "SidesConfig",
    "StateSettings",
    "load_config",
    "parse_package_arg",
]


#: The repository (or source tree) this package lives in; holds the shipped `playbooks/`.
PACKAGE_ROOT = Path(__file__).resolve().parent.parent

_SERVICE_NAME_RE = re.compile(r"^[a-z][a-z0-9_-]{0,62}$")
_GROUP_NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_-]{0,127}$")
_PACKAGE_NAME_RE = re.compile(r"^[a-z0-9][a-z0-9+.-]*$")
# Debian ([epoch:]upstream[-revision], with ~ and +) and RPM (with _ and ~) versions.
# No whitespace, no shell metacharacters, no globs.
_PACKAGE_VERSION_RE = re.compile(r"^(?:[0-9]+:)?[A-Za-z0-9][A-Za-z0-9.+~_-]*$")
_SERIAL_PERCENT_RE = re.compile(r"^(?:[1-9][0-9]?|100)%$")
_SAFE_USER_RE = re.compile(r"^[A-Za-z0-9._][A-Za-z0-9._-]{0,63}$")

_EXAMPLE = "inventories/example/bluegreen.yml"


# --------------------------------------------------------------------------- field types


def _check_service_name(value: str) -> str:
    if not _SERVICE_NAME_RE.match(value):
        raise ValueError(
            f"invalid service name {value!r}: use 1-63 characters, lowercase letters, digits,"
            " '_' or '-', starting with a letter"
        )
    return value


def _check_group_name(value: str) -> str:
    if not _GROUP_NAME_RE.match(value):
        raise ValueError(
            f"invalid inventory group name {value!r}: use letters, digits, '_' or '-',"
            " starting with a letter or '_'"
        )
    return value


def _check_package_name(value: str) -> str:
    if len(value) > 128 or not _PACKAGE_NAME_RE.match(value):
        raise ValueError(
            f"invalid package name {value!r}: use lowercase letters, digits, '+', '.', '-',"
            " starting with a letter or digit"
        )
    return value


def _check_package_version(value: str) -> str:
    if len(value) > 128 or not _PACKAGE_VERSION_RE.match(value):
        raise ValueError(
            f"invalid package version {value!r}: a Debian/RPM version such as '1.0.1-2' or"
            " '1:3.0.11-1~deb12u2' (letters, digits, '.', '+', '~', '_', '-', optional"
            " 'EPOCH:'; no spaces, globs or shell characters)"
        )
    return value


def _check_serial(value: Any) -> int | str:
    # bool is an int subclass: `serial: yes` is a mistake, not 1.
    if isinstance(value, bool):
        raise ValueError(
            f"serial must be a number of hosts or a percentage like '50%', got {value!r}"
        )
    if isinstance(value, str) and value.strip().isdigit():
        value = int(value.strip())
    if isinstance(value, int):
        if not 1 <= value <= 10000:
            raise ValueError(f"serial must be between 1 and 10000 hosts, got {value}")
        return value
    if isinstance(value, str):
        text = value.strip()
        if _SERIAL_PERCENT_RE.match(text):
            return text
    raise ValueError(
        f"serial must be a number of hosts (1-10000) or a percentage from '1%' to '100%', got {value!r}"
    )


def _check_url_path(value: str) -> str:
    if not value.startswith("/") or any(c.isspace() for c in value):
        raise ValueError(f"url_path must start with '/' and contain no spaces, got {value!r}")
    if len(value) > 2048:
        raise ValueError(f"url_path is {len(value)} characters long; the limit is 2048")
    return value


def _no_bool(value: Any) -> Any:
    if isinstance(value, bool):
        raise ValueError(f"must be a number, got the boolean {value}")
    return value


ServiceName = Annotated[str, AfterValidator(_check_service_name)]
GroupName = Annotated[str, AfterValidator(_check_group_name)]
PackageName = Annotated[str, AfterValidator(_check_package_name)]
PackageVersion = Annotated[str, AfterValidator(_check_package_version)]
Serial = Annotated[int | str, BeforeValidator(_check_serial)]
NonEmptyStr = Annotated[str, Field(min_length=1, max_length=4096)]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, defer_build=True)


# --------------------------------------------------------------------------- models


class SSHSettings(_Model):
    """How bluegreen (Ansible, testinfra) reaches the hosts. Host keys are always checked."""

    user: str = Field(default="root", pattern=_SAFE_USER_RE.pattern)
    private_key_file: NonEmptyStr | None = None
    known_hosts: NonEmptyStr = Field(description="known_hosts file; strict checking is always on")
    ssh_config: NonEmptyStr | None = None
    connect_timeout: float = Field(default=10.0, gt=0, le=300)


class StateSettings(_Model):
    """Where the state store lives (SQLite file, relative to the config file's directory)."""

    path: NonEmptyStr = ".bluegreen/state.db"


_SYSLOG_TARGET = r"^(local|off|tcp://(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9.-]+):[0-9]{1,5})$"


class WitnessConfig(_Model):
    """Where the audit head is written after every command that appended records."""

    syslog: str = Field(default="local", pattern=_SYSLOG_TARGET,
                        description="local (/dev/log), off, or tcp://HOST:PORT (RFC 5424)")
    syslog_copy: NonEmptyStr | None = None
    file: NonEmptyStr | None = None
    timeout_seconds: float = Field(default=1.0, gt=0, le=10)


class AuditConfig(_Model):
    """The audit key file (default: audit.key beside the state database) and witnesses."""

    key_file: NonEmptyStr | None = None
    witness: WitnessConfig = Field(default_factory=WitnessConfig)


class SidesConfig(_Model):
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


class PackageSpec(_Model):
    """One package to install or upgrade; `version=None` means the newest available."""

    name: PackageName
    version: PackageVersion | None = None

    def __str__(self) -> str:
        return self.name if self.version is None else f"{self.name}={self.version}"


class PatchSettings(_Model):
    """What to change on the standby side, and how carefully."""

    playbook: NonEmptyStr = "playbooks/patch.yml"
    packages: list[PackageSpec] = Field(default_factory=list, max_length=1000)
    security_updates: bool = False
    serial: Serial = "100%"  # the standby takes no traffic: patch it all at once by default
    max_fail_percentage: int = Field(default=0, ge=0, le=100)
    timeout_seconds: int = Field(default=1800, ge=1, le=86400)

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


class HttpCheck(_Model):
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


class BakeSettings(_Model):
    """Watching the new live side through the load balancer after a flip."""

    seconds: float = Field(default=30.0, ge=0, le=86400)
    interval_seconds: float = Field(default=1.0, gt=0, le=3600)
    url_path: Annotated[str, AfterValidator(_check_url_path)] = "/"
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


class DriftSettings(_Model):
    """Drift detection: the two sides must be mirror images except for the patch."""

    files: list[NonEmptyStr] = Field(
        default_factory=lambda: ["/etc/ssh/sshd_config"],
        max_length=500,
        description="absolute paths whose sha256 must match across hosts",
    )
    mode: Literal["fail", "warn", "off"] = "fail"

    @model_validator(mode="after")
    def _absolute(self) -> DriftSettings:
        bad = [f for f in self.files if not f.startswith("/") or any(c.isspace() for c in f)]
        if bad:
            raise ValueError(f"drift.files must be absolute paths without spaces, got {bad}")
        return self


class ServiceConfig(_Model):
    """One service: its two sides, how to patch it, and how to tell it is healthy."""

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


class BluegreenConfig(_Model):
    """The whole of bluegreen.yml."""

    version: Annotated[Literal[1], BeforeValidator(_no_bool)]  # YAML `true` is not 1
    inventory: NonEmptyStr
    ssh: SSHSettings
    state: StateSettings = Field(default_factory=StateSettings)
    audit: AuditConfig = Field(default_factory=AuditConfig)
    router: Annotated[HAProxySettings | CommandRouterSettings, Field(discriminator="kind")]
    services: dict[ServiceName, ServiceConfig] = Field(min_length=1)
    reports_dir: NonEmptyStr = "reports"

    @model_validator(mode="after")
    def _cross_checks(self) -> BluegreenConfig:
        frontends: dict[str, str] = getattr(self.router, "frontends", {}) or {}
        unknown = sorted(set(frontends) - set(self.services))
        if unknown:
            raise ValueError(
                f"router.frontends names services that are not under `services:`:"
                f" {', '.join(unknown)} (services: {', '.join(sorted(self.services))})"
            )
        if isinstance(self.router, CommandRouterSettings):
            blind = self.router.unobservable(list(self.services))
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
        return self


# --------------------------------------------------------------------------- loaded config


@dataclass(frozen=True)
class LoadedConfig:
    """A validated config plus where it came from; paths in it resolve against `base_dir`."""

    model: BluegreenConfig
    path: Path
    base_dir: Path
    digest: str = ""
    """sha256 of the bytes that were validated."""

    @property
    def router(self) -> HAProxySettings | CommandRouterSettings:
        return self.model.router

    @property
    def services(self) -> dict[str, ServiceConfig]:
        return self.model.services

    def resolve(self, p: str | Path) -> Path:
        """`~` expanded; a relative path is taken relative to the config file's directory."""
        path = Path(p).expanduser()
        return path if path.is_absolute() else self.base_dir / path

    @property
    def inventory_path(self) -> Path:
        return self.resolve(self.model.inventory)

    @property
    def state_path(self) -> Path:
        return self.resolve(self.model.state.path)

    @property
    def audit(self) -> AuditSettings:
        """The audit key file and witnesses, paths resolved (stdlib data: see
        `orchestrator.state.audit_settings`)."""
        from orchestrator.state.audit_settings import AuditSettings, WitnessSettings
        from orchestrator.state.sqlite import default_key_file

        audit, w = self.model.audit, self.model.audit.witness
        return AuditSettings(
            key_file=self.resolve(audit.key_file) if audit.key_file
            else default_key_file(self.state_path),
            witness=WitnessSettings(
                syslog=w.syslog,
                syslog_copy=self.resolve(w.syslog_copy) if w.syslog_copy else None,
                file=self.resolve(w.file) if w.file else None,
                timeout_s=w.timeout_seconds,
            ),
        )

    @property
    def reports_path(self) -> Path:
        return self.resolve(self.model.reports_dir)

    @property
    def known_hosts_path(self) -> Path:
        return self.resolve(self.model.ssh.known_hosts)

    @property
    def private_key_path(self) -> Path | None:
        key = self.model.ssh.private_key_file
        return None if key is None else self.resolve(key)

    @property
    def ssh_config_path(self) -> Path | None:
        cfg = self.model.ssh.ssh_config
        return None if cfg is None else self.resolve(cfg)

    def service(self, name: str) -> ServiceConfig:
        """The named service, or BadInput listing the services that exist."""
        try:
            return self.model.services[name]
        except KeyError:
            raise unknown_service(self.path, name, self.model.services) from None

    def playbook_path(self, service: str) -> Path:
        """The service's patch playbook: relative to the config dir first, else the shipped one."""
        playbook = self.service(service).patch.playbook
        return self.resolve_playbook(playbook, field=f"services.{service}.patch.playbook")

    def resolve_playbook(self, playbook: str, *, field: str = "patch.playbook") -> Path:
        path = Path(playbook).expanduser()
        if path.is_absolute():
            candidates = [path]
        else:
            candidates = [
                self.base_dir / path,
                PACKAGE_ROOT / path,
                PACKAGE_ROOT / "playbooks" / path,
            ]
        for candidate in candidates:
            if candidate.is_file():
                return candidate
        tried = ", ".join(str(c) for c in candidates)
        raise BadInput(
            f"{self.path}: {field}: playbook {playbook!r} not found (looked at: {tried})",
            hint="point it at an existing playbook, relative to the config file's directory,"
            " or remove the key to use the shipped playbooks/patch.yml",
        )


# --------------------------------------------------------------------------- loading


def _read_text(path: Path, source: str) -> tuple[str, str]:
    """The file's text and the sha256 of its bytes (see `config_snapshot`)."""
    name = str(path)
    try:
        st = path.stat()
    except FileNotFoundError:
        raise BadInput(
            f"{name}: config file not found ({source})",
            hint=f"pass -c PATH/TO/bluegreen.yml or set {CONFIG_ENV}; see {_EXAMPLE} for an example",
        ) from None
    except OSError as exc:
        raise BadInput(
            f"{name}: cannot read the config file: {exc.strerror or exc}",
            hint="check the path and its permissions",
        ) from None
    if stat.S_ISDIR(st.st_mode):
        raise BadInput(
            f"{name}: is a directory, not a config file ({source})",
            hint=f"pass the file itself, e.g. -c {path / DEFAULT_CONFIG_NAME}",
        )
    if not stat.S_ISREG(st.st_mode):
        raise BadInput(
            f"{name}: is not a regular file ({source})",
            hint="pass a YAML file with -c or $" + CONFIG_ENV,
        )
    if st.st_size > MAX_CONFIG_BYTES:
        raise BadInput(
            f"{name}: config file is {st.st_size} bytes, larger than the {MAX_CONFIG_BYTES}"
            " byte limit; refusing to parse it",
            hint="check that -c points at bluegreen.yml and not at another file",
        )
    try:
        with path.open("rb") as fh:
            data = fh.read(MAX_CONFIG_BYTES + 1)
    except OSError as exc:
        raise BadInput(
            f"{name}: cannot read the config file: {exc.strerror or exc}",
            hint="check the file's permissions",
        ) from None
    if len(data) > MAX_CONFIG_BYTES:
        raise BadInput(
            f"{name}: config file is larger than the {MAX_CONFIG_BYTES} byte limit;"
            " refusing to parse it",
            hint="check that -c points at bluegreen.yml and not at another file",
        )
    try:
        return data.decode("utf-8-sig"), hashlib.sha256(data).hexdigest()
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise BadInput(
            f"{name}:{line}: config file is not valid UTF-8 (byte 0x{data[exc.start]:02x}"
            f" at offset {exc.start}, line {line})",
            hint="save the file as UTF-8",
        ) from None


def _parse_yaml(text: str, name: str) -> dict[str, Any]:
    try:
        data = yaml.safe_load(text)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        problem = exc.problem or exc.context or "syntax error"
        if mark is not None:
            line, col = mark.line + 1, mark.column + 1
            raise BadInput(
                f"{name}:{line}:{col}: invalid YAML: {problem} (line {line}, column {col})",
                hint=f"fix the YAML at line {line}, column {col}: check indentation, a missing"
                " ':' or an unquoted value that starts with a special character",
            ) from None
        raise BadInput(f"{name}: invalid YAML: {problem}", hint="fix the YAML syntax") from None
    except yaml.YAMLError as exc:
        raise BadInput(f"{name}: invalid YAML: {exc}", hint="fix the YAML syntax") from None
    if data is None:
        raise BadInput(
            f"{name}: config file is empty",
            hint=f"write a config with at least version, inventory, ssh, router and services;"
            f" see {_EXAMPLE}",
        )
    if not isinstance(data, dict):
        raise BadInput(
            f"{name}: the top level must be a mapping (key: value), got {_type_name(data)}",
            hint=f"start the file with `version: 1`; see {_EXAMPLE}",
        )
    return data


def load_config(path: str | Path | None = None) -> LoadedConfig:
    """Read and validate bluegreen.yml.

    Precedence: `path`, then `$BLUEGREEN_CONFIG`, then `./bluegreen.yml`. Raises `BadInput`
    (one message: file, field path, fix) for every problem.
    """
    cfg_path, source = config_path(path)
    name = str(cfg_path)
    text, digest = _read_text(cfg_path, source)
    data = _parse_yaml(text, name)
    try:
        model = BluegreenConfig.model_validate(data)
    except ValidationError as exc:
        raise validation_to_bad_input(exc, name, BluegreenConfig) from None
    absolute = cfg_path.resolve()
    return LoadedConfig(model=model, path=absolute, base_dir=absolute.parent, digest=digest)


def parse_package_arg(arg: str) -> PackageSpec:
    """`--package NAME[=VERSION]` from the CLI -> PackageSpec, or BadInput with the fix."""
    hint = "use --package NAME or --package NAME=VERSION, e.g. --package demo-web=1.0.1"
    text = arg.strip()
    if not text:
        raise BadInput("--package: empty package", hint=hint)
    name, sep, version = text.partition("=")
    if sep and not version:
        raise BadInput(f"--package {arg!r}: '=' without a version", hint=hint)
    try:
        return PackageSpec(name=name, version=version if sep else None)
    except ValidationError as exc:
        first = exc.errors()[0]
        msg = _clean_msg(str(first.get("msg", "invalid value")))
        raise BadInput(f"--package {arg!r}: {msg}", hint=hint) from None


# --------------------------------------------------------------------------- error formatting


def _type_name(value: Any) -> str:
    if value is None:
        return "nothing (null)"
    if isinstance(value, bool):
        return f"a boolean ({value})"
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list | tuple):
        return "a list"
    if isinstance(value, str):
        return f"the text {_short(value)}"
    if isinstance(value, int | float):
        return f"the number {value}"
    return type(value).__name__


def _short(value: Any, limit: int = 60) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _clean_msg(msg: str) -> str:
    for prefix in ("Value error, ", "Assertion failed, "):
        if msg.startswith(prefix):
            return msg[len(prefix) :]
    return msg


def _unwrap(tp: Any) -> Any:
    """Strip Annotated[...] and Optional[...] (X | None)."""
    while True:
        origin = typing.get_origin(tp)
        if origin is Annotated:
            tp = typing.get_args(tp)[0]
            continue
        if origin in (typing.Union, types.UnionType):
            members = [a for a in typing.get_args(tp) if a is not type(None)]
            if len(members) == 1:
                tp = members[0]
                continue
        return tp


def _fields(tp: Any) -> dict[str, Any] | None:
    """Field name -> declared type of a pydantic model or a dataclass; None for other types."""
    if isinstance(tp, type) and issubclass(tp, BaseModel):
        return {name: f.annotation for name, f in tp.model_fields.items()}
    if isinstance(tp, type) and dataclasses.is_dataclass(tp):
        hints = typing.get_type_hints(tp)
        return {f.name: hints[f.name] for f in dataclasses.fields(tp)}
    return None


def _union_models(tp: Any) -> list[type]:
    tp = _unwrap(tp)
    if typing.get_origin(tp) in (typing.Union, types.UnionType):
        return [a for a in typing.get_args(tp) if _fields(a) is not None]
    return []


def _kind_tag(model: type) -> str | None:
    annotation = (_fields(model) or {}).get("kind")
    args = typing.get_args(annotation)
    return str(args[0]) if typing.get_origin(annotation) is Literal and args else None


@dataclass
class _Located:
    path: str  # dotted, user-facing: services.web.health[0].url
    parent: Any  # the model/type that holds the last element, or None
    last: Any  # the last loc element (field name, key or index)
    in_key: bool  # the error is about a mapping key, not its value


def _locate(loc: Sequence[int | str], root: type[BaseModel]) -> _Located:
    """Walk pydantic's loc along the model types: a dotted path without union tags."""
    parts: list[str] = []
    tp: Any = root
    parent: Any = None
    last: Any = None
    in_key = False
    for part in loc:
        if part == "[key]":
            in_key = True
            continue
        models = _union_models(tp) if tp is not None else []
        if models:
            tagged = [m for m in models if _kind_tag(m) == part]
            if tagged:
                tp = tagged[0]
                continue  # a discriminator tag, not something the user wrote
        base = _unwrap(tp) if tp is not None else None
        parent, last = base, part
        if isinstance(part, int):
            parts.append(f"[{part}]")
        else:
            parts.append(("." if parts else "") + str(part))
        fields = _fields(base)
        if fields is not None:
            tp = fields.get(str(part))
        elif typing.get_origin(base) is dict:
            tp = typing.get_args(base)[1]
        elif typing.get_origin(base) in (list, tuple):
            tp = typing.get_args(base)[0]
        else:
            tp = None
    return _Located("".join(parts) or "(top level)", parent, last, in_key)


def _model_fields_of(tp: Any) -> list[str]:
    return list(_fields(_unwrap(tp)) or {})


def _format_error(err: Any, name: str, root: type[BaseModel]) -> tuple[str, str]:
    """One pydantic error -> (message, fix)."""
    etype: str = err.get("type", "")
    loc = err.get("loc", ())
    setting_error = (err.get("ctx") or {}).get("error")
    field_name = getattr(setting_error, "field", None)
    if etype == "value_error" and isinstance(field_name, str):  # a SettingError
        loc = (*loc, *field_name.split("."))
    where = _locate(loc, root)
    path = where.path
    value = err.get("input")
    generic_fix = f"correct `{path}` in {name} (see {_EXAMPLE} for a complete example)"

    if etype in ("extra_forbidden", "unexpected_keyword_argument"):
        allowed = _model_fields_of(where.parent)
        close = difflib.get_close_matches(str(where.last), allowed, n=1, cutoff=0.6)
        guess = f" — did you mean {close[0]!r}?" if close else ""
        listed = f" (allowed: {', '.join(allowed)})" if allowed else ""
        fix = f"rename it to {close[0]!r}" if close else "remove it or fix its spelling"
        return f"{name}: {path}: unknown field{guess}{listed}", fix

    if etype == "missing":
        parent_path = path.rpartition(".")[0] if "." in path else ""
        under = f" under `{parent_path}:`" if parent_path else " at the top level"
        return (
            f"{name}: {path}: required field is missing",
            f"add `{where.last}:`{under} (see {_EXAMPLE})",
        )

    if etype == "too_short" and isinstance(value, dict | list):
        return (
            f"{name}: {path}: must not be empty",
            f"add at least one entry under `{path}:` (see {_EXAMPLE})",
        )

    if etype in ("union_tag_invalid", "union_tag_not_found"):
        models = _union_models(_field_type_at(loc, root))
        kinds = [k for k in (_kind_tag(m) for m in models) if k]
        allowed_kinds = ", ".join(kinds)
        if etype == "union_tag_not_found":
            return (
                f"{name}: {path}.kind: required field is missing (allowed kinds: {allowed_kinds})",
                f"add `kind:` with one of: {allowed_kinds}",
            )
        tag = (err.get("ctx") or {}).get("tag", "")
        close = difflib.get_close_matches(str(tag), kinds, n=1)
        guess = f" — did you mean {close[0]!r}?" if close else ""
        return (
            f"{name}: {path}.kind: unknown kind {tag!r}{guess} (allowed kinds: {allowed_kinds})",
            f"set `kind:` to one of: {allowed_kinds}",
        )

    if etype == "literal_error":
        expected = (err.get("ctx") or {}).get("expected", "")
        return (
            f"{name}: {path}: must be {expected}, got {_type_name(value)}",
            f"set `{where.last}: {expected}`".replace("'", ""),
        )

    if etype in ("model_type", "model_attributes_type", "dict_type", "dataclass_type"):
        return (
            f"{name}: {path}: expected a mapping (key: value), got {_type_name(value)}",
            generic_fix,
        )

    if etype in ("list_type", "tuple_type"):
        return f"{name}: {path}: expected a list, got {_type_name(value)}", generic_fix

    if where.in_key:
        msg = _clean_msg(str(err.get("msg", "invalid key")))
        return f"{name}: {path}: invalid key: {msg}", f"rename the key `{where.last}`"

    msg = _clean_msg(str(err.get("msg", "invalid value")))
    if etype == "string_type" and isinstance(value, int | float) and not isinstance(value, bool):
        return (
            f"{name}: {path}: expected text, got {_type_name(value)}",
            f'quote it (`{where.last}: "{value}"`) so YAML keeps it as text;'
            " an unquoted 1.10 would become the number 1.1",
        )
    if etype in ("value_error", "assertion_error"):
        return f"{name}: {path}: {msg}", getattr(setting_error, "fix", None) or generic_fix
    return f"{name}: {path}: {msg} (got {_type_name(value)})", generic_fix


def _field_type_at(loc: Sequence[int | str], root: type[BaseModel]) -> Any:
    """The declared type of the field at `loc` (for union errors, whose loc ends at the field)."""
    tp: Any = root
    for part in loc:
        base = _unwrap(tp)
        fields = _fields(base)
        if fields is not None:
            if str(part) not in fields:
                return None
            tp = fields[str(part)]
        elif typing.get_origin(base) is dict:
            tp = typing.get_args(base)[1]
        elif typing.get_origin(base) in (list, tuple):
            tp = typing.get_args(base)[0]
        else:
            models = _union_models(tp)
            tagged = [m for m in models if _kind_tag(m) == part]
            if not tagged:
                return None
            tp = tagged[0]
    return tp


def validation_to_bad_input(
    exc: ValidationError, name: str, root: type[BaseModel], *, limit: int = 5
) -> BadInput:
    errors = exc.errors(include_url=False)
    formatted = [_format_error(e, name, root) for e in errors]
    message, fix = formatted[0]
    others = [m for m, _ in formatted[1:limit]]
    if others:
        message += "".join(f"\n  also: {m}" for m in others)
    if len(formatted) > limit:
        message += f"\n  ... and {len(formatted) - limit} more problems"
    return BadInput(message, hint=fix)
