"""A validated bluegreen.yml and where it came from: `load_config()` and `LoadedConfig`.

`load_config()` is the only way the rest of the code should read a config file. Every problem
with the file (missing, too big, not UTF-8, bad YAML, wrong shape, unknown keys, bad values)
comes back as one `BadInput` that names the file, the field path and how to fix it. Pydantic's
own error dump never reaches the user.

Kept light: imports pydantic and PyYAML only (the rollback path loads the config in full when
its snapshot does not match the file, see `config.snapshot`).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path

from pydantic import ValidationError

from orchestrator.config.errors import clean_message, validation_to_bad_input
from orchestrator.config.files import FileKind, read_yaml_mapping
from orchestrator.config.location import (
    CONFIG_ENV,
    DEFAULT_CONFIG_NAME,
    MAX_CONFIG_BYTES,
    config_path,
)
from orchestrator.config.models import (
    DEFAULT_SITE,
    BluegreenConfig,
    PackageSpec,
    ServiceConfig,
)
from orchestrator.errors import BadInput, unknown_service
from orchestrator.routers.base import RouterSettings
from orchestrator.state.audit_settings import AuditSettings
from orchestrator.state.registry import StateLocation, parse_state_url, sqlite_location
from orchestrator.trust import check_trusted, check_trusted_ansible

#: The repository (or source tree) this package lives in; holds the shipped `playbooks/`.
PACKAGE_ROOT = Path(__file__).resolve().parents[2]

CONFIG_EXAMPLE = "inventories/example/bluegreen.yml"

CONFIG_FILE = FileKind(
    what="config file",
    max_bytes=MAX_CONFIG_BYTES,
    missing_hint=f"pass -c PATH/TO/bluegreen.yml or set {CONFIG_ENV}; see {CONFIG_EXAMPLE} for an"
    " example",
    wrong_file_hint="check that -c (or $" + CONFIG_ENV + ") points at bluegreen.yml and not at"
    " another file",
    content_hint="write a config with at least version, inventory, ssh, router and services"
    f" (start the file with `version: 1`); see {CONFIG_EXAMPLE}",
    directory_hint="pass the file itself, e.g. -c {path}/" + DEFAULT_CONFIG_NAME,
)


@dataclass(frozen=True)
class LoadedConfig:
    """A validated config plus where it came from; paths in it resolve against `base_dir`."""

    model: BluegreenConfig
    path: Path
    base_dir: Path
    digest: str = ""
    """sha256 of the bytes that were validated."""

    @property
    def router(self) -> RouterSettings:
        return self.model.router

    @property
    def services(self) -> dict[str, ServiceConfig]:
        return self.model.services

    site: str | None = None
    """Set on the view `for_site()` returns: the site whose settings `model` holds."""

    @property
    def sites(self) -> dict[str, list[str]]:
        """Every site that has services -> its services, sorted (`default`: the services
        that name no site)."""
        out: dict[str, list[str]] = {}
        for name, service in sorted(self.model.services.items()):
            out.setdefault(service.site, []).append(name)
        return out

    @property
    def inventory_services(self) -> list[str]:
        """The services whose hosts are in `inventory` (the view of a site: all of its
        services; the whole config: those of sites without an inventory of their own)."""
        if self.site is not None:
            return list(self.model.services)
        own = {name for name, site in self.model.sites.items() if site.inventory}
        return [name for name, svc in self.model.services.items() if svc.site not in own]

    def site_of(self, service: str) -> str:
        return self.service(service).site

    @property
    def sites_with_reach(self) -> list[str]:
        """The sites with an inventory, ssh or router of their own (sorted)."""
        return sorted(name for name, own in self.model.sites.items()
                      if (own.inventory, own.ssh, own.router) != (None, None, None))

    @property
    def site_routers(self) -> dict[str, RouterSettings]:
        """Service -> the router of its site, for the services of sites with a router of
        their own (the config snapshot keeps them for `rollback`)."""
        if self.site is not None:
            return {}
        return {name: own.router for name, svc in self.model.services.items()
                if (own := self.model.sites.get(svc.site)) is not None and own.router is not None}

    def for_service(self, name: str) -> LoadedConfig:
        """The config a command acting on service `name` uses: the view of its site
        (`for_site`) when that site has reach of its own (inventory, ssh or router), so
        that its Ansible, probes and flips go to that site's hosts and load balancer; else
        this config (an unknown name too: the command says so itself)."""
        if self.site is not None or name not in self.model.services:
            return self
        site = self.model.services[name].site
        return self.for_site(site) if site in self.sites_with_reach else self

    def views(self) -> list[LoadedConfig]:
        """Every service once, each in the config its commands use (`for_service`): this
        config with the services of the sites without reach of their own, then one view
        per site with its own."""
        reach = self.sites_with_reach
        if self.site is not None or not reach:
            return [self]
        here = {n: s for n, s in self.model.services.items() if s.site not in reach}
        out = [dataclasses.replace(self, model=self.model.model_copy(update={"services": here}))
               ] if here else []
        return out + [self.for_site(site) for site in reach if site in self.sites]

    def for_site(self, site: str) -> LoadedConfig:
        """This config as one site's worker sees it: the site's inventory, ssh and router
        (each the top-level one where the site gives none) and only the site's services.
        BadInput naming the sites there are when `site` has no services."""
        services = self.sites.get(site)
        if not services:
            known = sorted({DEFAULT_SITE, *self.model.sites})
            raise BadInput(
                f"{self.path}: site {site!r} has no services (sites with services: "
                f"{', '.join(sorted(self.sites))}; sites: {', '.join(known)})",
                hint="name a site that services use (`site:` under each service), or set "
                "`site: " + site + "` on the services its machine reaches",
            )
        own = self.model.sites.get(site)
        update: dict[str, object] = {
            "services": {name: self.model.services[name] for name in services}}
        if own is not None:
            update.update({k: v for k, v in (("inventory", own.inventory), ("ssh", own.ssh),
                                             ("router", own.router)) if v is not None})
        return dataclasses.replace(self, model=self.model.model_copy(update=update), site=site)

    def resolve(self, p: str | Path) -> Path:
        """`~` expanded; a relative path is taken relative to the config file's directory."""
        path = Path(p).expanduser()
        return path if path.is_absolute() else self.base_dir / path

    @property
    def inventory_path(self) -> Path:
        return self.resolve(self.model.inventory)

    @property
    def state(self) -> StateLocation:
        """The state store: `state.url`, else the SQLite file `state.path`."""
        url = self.model.state.url
        return parse_state_url(url) if url else sqlite_location(self.resolve(self.model.state.path))

    @property
    def state_path(self) -> Path | None:
        """The SQLite file of the state store (None: a server database)."""
        return self.state.path

    @property
    def state_dir(self) -> Path:
        """Where this machine keeps its own files (audit key, caches): beside a SQLite
        file, else `.bluegreen/` beside the config."""
        path = self.state.path
        return path.parent if path is not None else self.base_dir / ".bluegreen"

    @property
    def audit(self) -> AuditSettings:
        """The audit key file and witnesses, paths resolved (stdlib data: see
        `orchestrator.state.audit_settings`)."""
        from orchestrator.state.audit_settings import AuditSettings, WitnessSettings
        from orchestrator.state.registry import default_key_file

        audit, w = self.model.audit, self.model.audit.witness
        return AuditSettings(
            key_file=self.resolve(audit.key_file) if audit.key_file
            else default_key_file(self.state, self.base_dir),
            witness=WitnessSettings(
                # the implicit default: the local socket only when nothing else witnesses
                syslog=w.syslog or ("off" if w.file else "local"),
                syslog_copy=self.resolve(w.syslog_copy) if w.syslog_copy else None,
                file=self.resolve(w.file) if w.file else None,
                timeout_s=w.timeout_seconds,
            ),
        )

    @property
    def reports_path(self) -> Path:
        return self.resolve(self.model.reports_dir)

    @property
    def advisories_cache_path(self) -> Path:
        """Where feeds and parsed changelogs are cached (default: next to the state db)."""
        configured = self.model.advisories.cache_dir
        return self.resolve(configured) if configured else self.state_dir / "advisories"

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
                check_trusted_ansible(candidate, "playbook")  # code: see orchestrator.trust
                return candidate
        tried = ", ".join(str(c) for c in candidates)
        raise BadInput(
            f"{self.path}: {field}: playbook {playbook!r} not found (looked at: {tried})",
            hint="point it at an existing playbook, relative to the config file's directory,"
            " or remove the key to use the shipped playbooks/patch.yml",
        )


def load_config(path: str | Path | None = None) -> LoadedConfig:
    """Read and validate bluegreen.yml.

    Precedence: `path`, then `$BLUEGREEN_CONFIG`, then `./bluegreen.yml`. Raises `BadInput`
    (one message: file, field path, fix) for every problem.
    """
    cfg_path, source = config_path(path)
    check_trusted(cfg_path, "config file")  # it names the code bluegreen runs
    data, digest = read_yaml_mapping(cfg_path, CONFIG_FILE, source)
    try:
        model = BluegreenConfig.model_validate(data)
    except ValidationError as exc:
        raise validation_to_bad_input(
            exc, str(cfg_path), BluegreenConfig, example=CONFIG_EXAMPLE
        ) from None
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
        msg = clean_message(str(first.get("msg", "invalid value")))
        raise BadInput(f"--package {arg!r}: {msg}", hint=hint) from None
