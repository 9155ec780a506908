"""The `advisories:` section of bluegreen.yml (validated with the rest of the file).

    advisories:
      repositories:                       # the apt repositories the hosts install from
        - http://deb.debian.org/debian-security bookworm-security main
        - {line: "http://mirror.example/local ./", keyring: /etc/bluegreen/local.gpg}
        - {line: "http://10.0.0.9/unsigned ./", trusted: true}   # read unsigned: warned
      keyring: /usr/share/keyrings/debian-archive-keyring.gpg   # the default keyring
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

from orchestrator.advisories.release import DEBIAN_KEYRING
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


class RepositorySettings(_Strict):
    """One repository with its own trust: `{line: "URL ./", keyring: PATH}` or
    `{line: ..., trusted: true}` (read unsigned, as apt's `[trusted=yes]`; warned)."""

    line: str = Field(min_length=1, max_length=4096)
    keyring: str | None = Field(default=None, min_length=1, max_length=4096)
    trusted: bool = False

    @field_validator("line")
    @classmethod
    def _line(cls, value: str) -> str:
        return _check_line(value)

    @field_validator("keyring")
    @classmethod
    def _keyring(cls, value: str | None) -> str | None:
        return None if value is None else _check_keyring(value)

    @model_validator(mode="after")
    def _one_trust(self) -> RepositorySettings:
        if self.trusted and self.keyring:
            raise ValueError("`trusted: true` reads the repository unsigned: remove `keyring:`,"
                             " or `trusted:` to verify it with that keyring")
        return self


def _check_line(line: str) -> str:
    try:
        RepoSpec.parse(line)
    except Exception as exc:  # BadInput -> the field's own message
        raise ValueError(getattr(exc, "message", str(exc))) from None
    return line


def _check_keyring(path: str) -> str:
    if not path.startswith("/"):
        raise ValueError(f"keyring {path!r}: give an absolute path (e.g. {DEBIAN_KEYRING})")
    return path


class AdvisorySettings(_Strict):
    repositories: list[str | RepositorySettings] = Field(default_factory=list, max_length=50)
    """apt lines (verified with `keyring`), or {line, keyring | trusted} each."""
    keyring: str = Field(default=DEBIAN_KEYRING, min_length=1, max_length=4096)
    """The keyring every repository's signed Release is verified with, unless it has its own
    (default: Debian's archive keyring, from the debian-archive-keyring package)."""
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
    def _repos(cls, value: list[str | RepositorySettings]) -> list[str | RepositorySettings]:
        for entry in value:
            if isinstance(entry, str):
                _check_line(entry)
        return value

    @field_validator("keyring")
    @classmethod
    def _default_keyring(cls, value: str) -> str:
        return _check_keyring(value)

    def repo_specs(self) -> list[RepoSpec]:
        """The repositories, each with the keyring it is verified with (or trusted)."""
        specs = []
        for entry in self.repositories:
            if isinstance(entry, str):
                specs.append(RepoSpec.parse(entry, keyring=self.keyring))
            else:
                keyring = None if entry.trusted else entry.keyring or self.keyring
                specs.append(RepoSpec.parse(entry.line, keyring=keyring, trusted=entry.trusted))
        return specs

    def spec_for(self, line: str, where: str) -> RepoSpec:
        """A repository given on the command line: as configured when it is, else verified
        with `keyring` (an unsigned one must be configured `trusted: true` first)."""
        spec = RepoSpec.parse(line, where, keyring=self.keyring)
        same = [s for s in self.repo_specs() if (s.url, s.suite, s.components)
                == (spec.url, spec.suite, spec.components)]
        return same[0] if same else spec

    @model_validator(mode="after")
    def _changelog_needs_repos(self) -> AdvisorySettings:
        if any(f.kind == "changelog" for f in self.feeds) and not self.repositories:
            raise ValueError("the changelog feed needs `repositories:` to read packages from")
        return self

    def effective_feeds(self) -> list[FeedSettings]:
        if self.feeds:
            return list(self.feeds)
        return [FeedSettings(kind="changelog")] if self.repositories else []
