"""Campaign files: pydantic models, loading with clear errors, and what a campaign asks of
each service (its advisories and packages).

A campaign is one or more advisories (CVE -> fixed package versions) applied to many
services in ordered waves, inside a maintenance window, with an approval policy, a
retention policy for the old side and webhooks to notify. `load_campaign()` is the only way
to read one; every problem comes back as one `BadInput` naming the file, the field and the
fix (the same error formatting as bluegreen.yml).
"""

from __future__ import annotations

import re
from datetime import timedelta
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    model_validator,
)

from orchestrator.config.errors import validation_to_bad_input
from orchestrator.config.files import FileKind, read_yaml_mapping
from orchestrator.config.models import PackageSpec
from orchestrator.config.types import (
    Duration,
    GroupName,
    PackageName,
    PackageVersion,
    ServiceName,
)
from orchestrator.schedule.window import Window

CAMPAIGN_EXAMPLE = "inventories/example/campaigns/2026-11-openssl.yml"
CAMPAIGN_FILE = FileKind(
    what="campaign file",
    max_bytes=256 * 1024,
    missing_hint=f"check the path; see {CAMPAIGN_EXAMPLE} for an example",
    wrong_file_hint="check that the path points at a campaign file",
    content_hint=f"write a mapping with name, advisories and waves; see {CAMPAIGN_EXAMPLE}",
)

_CVE_RE = re.compile(r"^CVE-\d{4}-\d{4,}$")
_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:~+-]{0,99}$")  # + ~: Debian versions in ids


def _check_cve(value: str) -> str:
    if not _CVE_RE.match(value):
        raise ValueError(f"invalid CVE id {value!r}: expected CVE-YYYY-NNNN")
    return value


def _check_id(value: str) -> str:
    if not _ID_RE.match(value):
        raise ValueError(
            f"invalid id {value!r}: letters, digits, '.', '_', ':', '~', '+' and '-', at most 100"
        )
    return value


def _check_url(value: str) -> str:
    if not value.startswith(("http://", "https://")) or any(c.isspace() for c in value):
        raise ValueError(f"webhook must be an http:// or https:// URL without spaces: {value!r}")
    return value


CveId = Annotated[str, AfterValidator(_check_cve)]
Ident = Annotated[str, AfterValidator(_check_id)]
WebhookUrl = Annotated[str, AfterValidator(_check_url)]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Advisory(_Model):
    """A security advisory: the packages and the versions that fix it."""

    id: Ident
    cves: list[CveId] = Field(default_factory=list, max_length=1000)
    severity: Literal["low", "medium", "high", "critical"] = "high"
    packages: dict[PackageName, PackageVersion] = Field(min_length=1, max_length=1000)
    applies_to: list[ServiceName] | None = None
    """Only these services are affected (default: every service of the campaign)."""


class GroupSelector(_Model):
    """Every service whose two side groups lie inside this inventory group."""

    group: GroupName


ServiceRef = ServiceName | GroupSelector


class Wave(_Model):
    name: str | None = Field(default=None, max_length=100)
    services: list[ServiceRef] = Field(min_length=1, max_length=1000)
    max_parallel: int = Field(default=1, ge=1, le=1000)
    """At most this many services of the wave in flight (run one at a time today)."""
    on_failure: Literal["stop", "continue"] = "stop"


class Approval(_Model):
    mode: Literal["auto", "manual"] = "auto"
    at: Literal["before_patch", "before_flip"] = "before_flip"
    distinct_approver: bool = False
    """manual only: the approver must be another person than the one who started the run,
    judged on the OS identity (user, and SUDO_USER under sudo), not on --actor."""

    @model_validator(mode="after")
    def _distinct_needs_manual(self) -> Approval:
        if self.distinct_approver and self.mode != "manual":
            raise ValueError("approval.distinct_approver needs approval.mode: manual "
                             "(an automatic approval has no approver)")
        return self


class Retention(_Model):
    """How long the old side stays as it is after the flip; then `converge` patches and
    verifies it too, so both sides match again."""

    keep: Duration = timedelta(days=7)
    converge: bool = False


class Notify(_Model):
    webhooks: list[WebhookUrl] = Field(default_factory=list, max_length=20)
    timeout_seconds: float = Field(default=3.0, gt=0, le=30)
    retries: int = Field(default=3, ge=0, le=10)


class FailureBudget(_Model):
    """With workers (`campaign run --workers`): no new service starts once this much has
    failed, counted in the store across every worker, site and wave (services in flight
    then still end). Unset: only `on_failure` of the waves stops a campaign."""

    max_failed_services: int | None = Field(default=None, ge=1, le=100_000)
    max_failed_hosts_percent: int | None = Field(
        default=None, ge=1, le=100,
        description="the failed services' hosts (one side each) as a share of all the "
        "campaign's hosts (one side per service)")


class WorkersPolicy(_Model):
    """How a campaign run by workers treats a site that has no live worker, and its
    fleet-wide failure budget."""

    no_worker_deadline: Duration = timedelta(minutes=10)
    """How long services of a site wait for a live worker of that site before..."""
    on_no_worker: Literal["defer", "fail"] = "defer"
    """... the campaign is deferred (exit 6, `campaign resume` later) or fails (exit 1)."""
    budget: FailureBudget = Field(default_factory=FailureBudget)


class Campaign(_Model):
    """The whole campaign file."""

    name: Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9._-]{0,62}$")]
    description: str | None = Field(default=None, max_length=2000)
    advisories: list[Advisory] = Field(min_length=1, max_length=1000)
    services: list[ServiceRef] | None = None
    """Default: every service named by the waves."""
    waves: list[Wave] = Field(min_length=1, max_length=100)
    approval: Approval = Field(default_factory=Approval)
    window: Window = Field(default_factory=lambda: Window(always=True))
    retention: Retention = Field(default_factory=Retention)
    notify: Notify = Field(default_factory=Notify)
    workers: WorkersPolicy = Field(default_factory=WorkersPolicy)
    """Used only by `campaign run --workers` (README: Sites and workers)."""

    @model_validator(mode="after")
    def _cross(self) -> Campaign:
        ids = [a.id for a in self.advisories]
        dupes = sorted({i for i in ids if ids.count(i) > 1})
        if dupes:
            raise ValueError(f"advisory listed more than once: {', '.join(dupes)}")
        versions: dict[str, str] = {}
        for adv in self.advisories:
            for pkg, ver in adv.packages.items():
                if versions.get(pkg, ver) != ver and adv.applies_to is None:
                    raise ValueError(
                        f"package {pkg!r} has two fixed versions ({versions[pkg]}, {ver}) in"
                        " advisories for the same services: keep the newer one"
                    )
                versions.setdefault(pkg, ver)
        return self


# --------------------------------------------------------------------------- resolving


def packages_for(campaign: Campaign, service: str) -> list[PackageSpec]:
    """The rollout's packages for one service: every advisory's fixed versions."""
    chosen: dict[str, str] = {}
    for adv in advisories_for(campaign, service):
        chosen.update(adv.packages)
    return [PackageSpec(name=n, version=v) for n, v in sorted(chosen.items())]


def advisories_for(campaign: Campaign, service: str) -> list[Advisory]:
    return [a for a in campaign.advisories if a.applies_to is None or service in a.applies_to]


# --------------------------------------------------------------------------- loading


def load_campaign(path: str | Path) -> Campaign:
    """Read and validate a campaign file; BadInput (file, field, fix) on any problem."""
    p = Path(path).expanduser()
    data, _digest = read_yaml_mapping(p, CAMPAIGN_FILE)
    return campaign_from_dict(data, str(p))


def campaign_from_dict(data: dict[str, Any], name: str = "campaign") -> Campaign:
    try:
        return Campaign.model_validate(data)
    except ValidationError as exc:
        raise validation_to_bad_input(exc, name, Campaign, example=CAMPAIGN_EXAMPLE) from None
