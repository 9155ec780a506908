"""The `advisories:` section of bluegreen.yml (validated with the rest of the file).

    advisories:
      repositories:                       # the apt repositories the hosts install from
        - http://deb.debian.org/debian-security bookworm-security main
      feeds:                              # default: [{kind: changelog}] with repositories
        - {kind: debian-tracker, url: https://security-tracker.debian.org/tracker/data/json}
        - {kind: osv, url: /srv/mirror/osv/Debian/all.zip}
        - {kind: changelog}
      release: bookworm                   # the tracker's release name
      ecosystem: "Debian:12"              # OSV's ecosystem
      min_urgency: low                    # default threshold of `exposure` and campaigns
      max_age_days: 7                     # older feeds are refused
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from orchestrator.advisories.repository import RepoSpec

Urgency = Literal["unimportant", "low", "medium", "high", "critical"]
FeedKind = Literal["debian-tracker", "osv", "changelog"]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class FeedSettings(_Strict):
    kind: FeedKind
    url: str | None = Field(default=None, min_length=1, max_length=4096)
    """File, directory (OSV) or http(s):// URL; the changelog feed reads `repositories`."""

    @model_validator(mode="after")
    def _needs_url(self) -> FeedSettings:
        if self.kind != "changelog" and not self.url:
            raise ValueError(f"a {self.kind} feed needs `url:` (a file or an http(s):// URL)")
        if self.kind == "changelog" and self.url:
            raise ValueError(
                "the changelog feed reads the packages of `advisories.repositories`: "
                "remove `url:` and list the repository there"
            )
        return self


class AdvisorySettings(_Strict):
    repositories: list[str] = Field(default_factory=list, max_length=50)
    feeds: list[FeedSettings] = Field(default_factory=list, max_length=20)
    release: str = Field(default="bookworm", pattern=r"^[a-z][a-z0-9-]{1,30}$")
    ecosystem: str = Field(default="Debian:12", pattern=r"^[A-Za-z][A-Za-z0-9.:-]{1,40}$")
    architecture: str = Field(default="amd64", pattern=r"^[a-z0-9-]{2,20}$")
    min_urgency: Urgency = "low"
    max_age_days: float = Field(default=7, gt=0, le=3650)
    max_mb: int = Field(default=512, ge=1, le=10_000)
    cache_dir: str | None = Field(default=None, min_length=1)
    """Relative to bluegreen.yml; default: `advisories/` next to the state database."""
    offline: bool = False

    @field_validator("repositories")
    @classmethod
    def _repos(cls, value: list[str]) -> list[str]:
        for line in value:
            try:
                RepoSpec.parse(line)
            except Exception as exc:  # BadInput -> the field's own message
                raise ValueError(getattr(exc, "message", str(exc))) from None
        return value

    @model_validator(mode="after")
    def _changelog_needs_repos(self) -> AdvisorySettings:
        if any(f.kind == "changelog" for f in self.feeds) and not self.repositories:
            raise ValueError("the changelog feed needs `repositories:` to read packages from")
        return self

    def effective_feeds(self) -> list[FeedSettings]:
        if self.feeds:
            return list(self.feeds)
        return [FeedSettings(kind="changelog")] if self.repositories else []
