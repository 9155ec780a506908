"""apt repositories as bluegreen reads them: what they offer (binary package, version,
source package, file), from their `Packages` index.

A repository is written as in sources.list, without `deb`: `URL SUITE COMPONENT...`
(`http://deb.debian.org/debian-security bookworm-security main`) or a flat repository
`URL DIR` (`http://10.231.0.1:8099/bookworm-security ./`, or `URL` alone for `./`).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING
from urllib.parse import quote

from orchestrator.advisories import versions
from orchestrator.advisories.base import SOURCE_NAME_RE, bad_feed
from orchestrator.errors import BadInput
from orchestrator.secrets import redact_url

if TYPE_CHECKING:  # fetch imports urllib: loaded only when a repository is read
    from orchestrator.advisories.fetch import FetchPolicy
    from orchestrator.advisories.release import Release


@dataclass(frozen=True)
class RepoSpec:
    url: str
    suite: str
    components: tuple[str, ...] = ()
    keyring: str | None = None
    """The keyring its Release is verified with (None: Debian's archive keyring)."""
    trusted: bool = False
    """Read without a signed Release (apt's `[trusted=yes]`): only when configured so."""

    @classmethod
    def parse(
        cls, line: str, where: str = "advisories.repositories", *,
        keyring: str | None = None, trusted: bool = False,
    ) -> RepoSpec:
        parts = line.split()
        if parts and parts[0] == "deb":
            parts = parts[1:]
        if parts and parts[0].startswith("["):
            raise BadInput(
                f"{where}: {line!r}: options in [] are not supported (a keyring or "
                "`trusted: true` goes beside it: {line: URL..., keyring: PATH})",
                hint="write `URL SUITE COMPONENT...` or `URL ./` (without [options]); a "
                "keyring or `trusted: true` goes beside it: {line: ..., keyring: PATH}",
            )
        if not parts or not parts[0].startswith(("http://", "https://", "file:/", "/")):
            raise BadInput(
                f"{where}: {line!r} is not an apt repository",
                hint="write `URL SUITE COMPONENT...` (e.g. `http://deb.debian.org/"
                "debian-security bookworm-security main`) or `URL ./` for a flat repository",
            )
        url = parts[0].rstrip("/")
        suite = parts[1] if len(parts) > 1 else "./"
        comps = tuple(parts[2:])
        if not suite.endswith("/") and not comps:
            raise BadInput(
                f"{where}: {line!r}: a suite needs components (e.g. main)",
                hint="write `URL SUITE COMPONENT...`, or end a flat repository's dir with /",
            )
        return cls(url, suite, comps, keyring, trusted)

    @property
    def flat(self) -> bool:
        return self.suite.endswith("/")

    def base(self) -> str:
        """Where the index's `Filename:` paths start."""
        if self.flat:
            sub = self.suite.strip("/").removeprefix(".").strip("/")
            return f"{self.url}/{sub}" if sub else self.url
        return self.url

    def release_dir(self) -> str:
        """Where its InRelease is: the flat directory, or dists/SUITE."""
        return self.base() if self.flat else f"{self.url}/dists/{self.suite}"

    def index_dirs(self, arch: str) -> list[str]:
        return [f"{self.release_dir()}/{p}".rstrip("/") for p in self.index_prefixes(arch)]

    def index_prefixes(self, arch: str) -> list[str]:
        """Each index directory relative to the Release (as its SHA256 lines name them)."""
        if self.flat:
            return [""]
        return [f"{c}/binary-{arch}/" for c in self.components]

    def __str__(self) -> str:
        url = redact_url(self.url) if self.url.startswith("http") else self.url
        return " ".join([url, self.suite, *self.components])


@dataclass(frozen=True)
class RepoPackage:
    name: str
    version: str
    source: str
    source_version: str
    url: str
    sha256: str
    size: int


@dataclass
class RepositoryIndex:
    """Every binary package the repositories offer."""

    repos: list[str] = field(default_factory=list)
    packages: list[RepoPackage] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._by_source: dict[str, list[RepoPackage]] = {}
        for p in self.packages:
            self._by_source.setdefault(p.source, []).append(p)

    def of_source(self, source: str) -> list[RepoPackage]:
        return list(self._by_source.get(source, []))

    def newest_source_version(self, source: str) -> str | None:
        found = [p.source_version for p in self._by_source.get(source, [])]
        return versions.newest(found) if found else None

    def newest_binary_version(self, name: str) -> str | None:
        found = [p.version for ps in self._by_source.values() for p in ps if p.name == name]
        return versions.newest(found) if found else None


def load_index(specs: Sequence[RepoSpec], arch: str, policy: FetchPolicy) -> RepositoryIndex:
    """Every repository's `Packages`, each checked against its signed Release (`release`)
    unless the repository is configured `trusted: true` (then a note says it is not)."""
    from orchestrator.advisories.release import read_release

    index = RepositoryIndex(repos=[str(s) for s in specs])
    packages: list[RepoPackage] = []
    for spec in specs:
        release = read_release(spec, spec.release_dir(), policy)
        if release is None:
            index.notes.append(f"apt repository {spec}: not authenticated (trusted: true): "
                               "its indexes and packages are taken as served")
        for prefix in spec.index_prefixes(arch):
            text, origin, notes = _read_packages(spec, prefix, release, policy)
            index.notes += notes
            packages += parse_packages(text, spec.base(), origin, index.notes)
    return RepositoryIndex(index.repos, packages, index.notes)


def _read_packages(
    spec: RepoSpec, prefix: str, release: Release | None, policy: FetchPolicy
) -> tuple[str, str, list[str]]:
    from orchestrator.advisories.fetch import FeedMissing, display, fetch

    directory = f"{spec.release_dir()}/{prefix}".rstrip("/")
    for name in ("Packages.xz", "Packages.gz", "Packages"):
        if release is not None and prefix + name not in release.files:
            continue
        try:
            got = fetch(f"{directory}/{name}", policy)
        except FeedMissing:
            continue
        if release is not None:
            release.check(spec, prefix + name, got)
        try:
            return got.read_bytes(policy).decode("utf-8"), got.origin, got.notes
        except UnicodeDecodeError as exc:
            raise bad_feed(got.origin, f"not UTF-8 text (byte {exc.start})") from None
    if release is not None:
        from orchestrator.advisories.release import refused

        raise refused(spec, f"the signed {release.where} lists no {prefix}Packages(.xz/.gz) "
                      "that is there", "check advisories.repositories (suite, components)")
    raise bad_feed(
        display(directory),
        "no Packages, Packages.gz or Packages.xz index there",
        "check advisories.repositories (URL SUITE COMPONENT..., or URL ./ when flat)",
    )


def parse_packages(
    text: str, base: str, origin: str, notes: list[str] | None = None
) -> list[RepoPackage]:
    """The stanzas of a `Packages` index (BadInput naming the index when one is broken; a
    stanza whose version python-debian rejects is skipped, with a note in `notes`)."""
    from debian.deb822 import Packages

    found: list[RepoPackage] = []
    for n, para in enumerate(_paragraphs(text, Packages)):
        where = f"{origin} stanza {n + 1}"
        name = para.get("Package")
        version = para.get("Version")
        filename = para.get("Filename")
        if not name or not version or not filename:
            raise bad_feed(where, "a stanza needs Package, Version and Filename")
        if not SOURCE_NAME_RE.match(name) or not versions.is_valid(version):
            raise bad_feed(where, f"{name[:60]!r} {version[:60]!r}: not a package and version")
        source, _, rest = (para.get("Source") or name).partition(" ")
        source_version = rest.strip("() ") or version
        if not SOURCE_NAME_RE.match(source) or not versions.is_valid(source_version):
            raise bad_feed(where, f"Source {para.get('Source', '')[:60]!r} is not valid")
        unreadable = next((v for v in (version, source_version) if not versions.readable(v)), None)
        if unreadable is not None:
            if notes is not None:
                notes.append(f"{where}: {versions.not_read(name, unreadable)}")
            continue
        if ".." in filename or filename.startswith("/"):
            raise bad_feed(where, f"Filename {filename[:80]!r} leaves the repository")
        sha = para.get("SHA256", "")
        size = para.get("Size", "0")
        if len(sha) != 64 or not size.isdigit():
            raise bad_feed(where, "SHA256 and Size are required")
        rel = filename.removeprefix("./")
        if base.startswith(("http://", "https://")):
            rel = quote(rel, safe="/~")  # apt quotes too: `zlib1g_1%3a1.2.13...deb` is a name
        found.append(
            RepoPackage(name, version, source, source_version, f"{base}/{rel}", sha, int(size))
        )
    return found


def _paragraphs(text: str, kind: type) -> Iterable[dict[str, str]]:
    return kind.iter_paragraphs(text.splitlines(keepends=True), use_apt_pkg=False)  # type: ignore[attr-defined,no-any-return]


def sha256_of(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()
