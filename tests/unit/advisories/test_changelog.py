from __future__ import annotations

from pathlib import Path

import pytest

from orchestrator.advisories.changelog import ChangelogSource, read_changelog
from orchestrator.advisories.fetch import FetchPolicy
from orchestrator.advisories.repository import RepoSpec, load_index
from orchestrator.errors import BadInput
from tests.unit.advisories.feeds import (
    DEB_CHANGELOG,
    OPENSSL_FIXED,
    OPENSSL_FIXED_EARLIER,
    OPENSSL_INSTALLED,
    SigningKey,
    build_deb,
    flat_repo,
)


@pytest.fixture
def repo(tmp_path: Path, signing_key: SigningKey) -> Path:
    folder = tmp_path / "repo"
    folder.mkdir()
    build_deb(folder, "libssl3", OPENSSL_FIXED, "openssl", DEB_CHANGELOG)
    build_deb(folder, "openssl", OPENSSL_FIXED, "openssl", DEB_CHANGELOG)
    build_deb(folder, "libfoo1", "1.0-1", "foo", None)  # a package without a changelog
    flat_repo(folder, signing_key)
    return folder


def _source(tmp_path: Path, repo: Path, key: SigningKey | None) -> ChangelogSource:
    """The changelog source over `repo`, verified with `key` (None: `trusted: true`)."""
    policy = FetchPolicy(cache_dir=tmp_path / "cache")
    spec = RepoSpec.parse(f"{repo} ./", keyring=str(key.keyring) if key else None,
                          trusted=key is None)
    return ChangelogSource(load_index([spec], "amd64", policy), policy)


def test_cves_from_the_real_deb(tmp_path: Path, repo: Path) -> None:
    entries = read_changelog(repo / f"openssl_{OPENSSL_FIXED}_amd64.deb", "openssl", "x")
    assert entries is not None
    assert [e["version"] for e in entries] == [OPENSSL_FIXED, OPENSSL_FIXED_EARLIER,
                                              OPENSSL_INSTALLED]
    assert entries[0]["urgency"] == "high"
    assert entries[0]["cves"] == ["CVE-2026-35189", "CVE-2026-84782"]


def test_source_newest_mention_wins(
        tmp_path: Path, repo: Path, signing_key: SigningKey) -> None:
    data = _source(tmp_path, repo, signing_key).load({"openssl": OPENSSL_INSTALLED, "foo": "0.9-1"})
    by_cve = {v.cve: v for v in data.vulnerabilities}
    assert by_cve["CVE-2026-84782"].fixed_version == OPENSSL_FIXED
    assert by_cve["CVE-2026-84782"].urgency == "high"
    assert by_cve["CVE-2026-42767"].fixed_version == OPENSSL_FIXED_EARLIER
    assert by_cve["CVE-2026-42767"].urgency == "medium"
    # named in ~deb12u2 and again ("follow-up") in ~deb12u1: the newest entry counts
    assert by_cve["CVE-2026-35189"].fixed_version == OPENSSL_FIXED
    assert by_cve["CVE-2026-7383"].fixed_version == OPENSSL_INSTALLED
    assert {v.available_version for v in data.vulnerabilities} == {OPENSSL_FIXED}
    assert any("foo" in n and "no changelog" in n for n in data.notes)


def test_sources_not_newer_in_the_repository_are_skipped(
        tmp_path: Path, repo: Path, signing_key: SigningKey) -> None:
    data = _source(tmp_path, repo, signing_key).load({"openssl": OPENSSL_FIXED})
    assert data.vulnerabilities == []
    assert not list((tmp_path / "cache").glob("changelog-*"))  # nothing downloaded


def test_parsed_changelogs_are_cached(
        tmp_path: Path, repo: Path, signing_key: SigningKey) -> None:
    source = _source(tmp_path, repo, signing_key)
    first = source.load({"openssl": OPENSSL_INSTALLED})
    assert len(list((tmp_path / "cache").glob("changelog-*.json"))) == 1
    for deb in repo.glob("*.deb"):
        deb.unlink()  # a second load reads the cache, not the packages
    assert source.load({"openssl": OPENSSL_INSTALLED}).vulnerabilities == first.vulnerabilities


def test_a_deb_that_does_not_match_the_index(
        tmp_path: Path, repo: Path, signing_key: SigningKey) -> None:
    source = _source(tmp_path, repo, signing_key)
    for deb in repo.glob("*openssl*.deb"):
        deb.write_bytes(deb.read_bytes()[:-100])
    for deb in repo.glob("libssl3*.deb"):
        deb.write_bytes(deb.read_bytes() + b"x")
    with pytest.raises(BadInput, match="SHA256 differs"):
        source.load({"openssl": OPENSSL_INSTALLED})


def test_bad_index(tmp_path: Path, repo: Path) -> None:
    (repo / "Packages.gz").unlink()
    text = (repo / "Packages").read_text()
    (repo / "Packages").write_text(text.replace(f"Version: {OPENSSL_FIXED}", "Version: 1.0 $(id)"))
    with pytest.raises(BadInput, match="not a package and version"):
        _source(tmp_path, repo, None)
    (repo / "Packages").unlink()
    with pytest.raises(BadInput, match="no Packages"):
        _source(tmp_path, repo, None)


@pytest.mark.parametrize(
    ("line", "url", "index"),
    [
        ("http://deb.debian.org/debian-security bookworm-security main",
         "http://deb.debian.org/debian-security",
         "http://deb.debian.org/debian-security/dists/bookworm-security/main/binary-amd64"),
        ("http://10.231.0.1:8099/bookworm-security ./", "http://10.231.0.1:8099/bookworm-security",
         "http://10.231.0.1:8099/bookworm-security"),
        ("deb http://h/repo sub/", "http://h/repo/sub", "http://h/repo/sub"),
    ],
)
def test_repository_lines(line: str, url: str, index: str) -> None:
    spec = RepoSpec.parse(line)
    assert spec.base() == url
    assert spec.index_dirs("amd64") == [index]


@pytest.mark.parametrize(
    "line", ["", "bookworm main", "http://h bookworm", "deb [trusted=yes] http://h ./"]
)
def test_bad_repository_lines(line: str) -> None:
    with pytest.raises(BadInput):
        RepoSpec.parse(line)


def test_filenames_are_quoted_in_urls_as_apt_does() -> None:
    from orchestrator.advisories.repository import parse_packages

    stanza = (
        "Package: zlib1g\nSource: zlib\nVersion: 1:1.2.13.dfsg-1+deb12u1\n"
        "Filename: ./zlib1g_1%3a1.2.13.dfsg-1+deb12u1_amd64.deb\nSize: 10\n"
        f"SHA256: {'0' * 64}\n"
    )
    (pkg,) = parse_packages(stanza, "http://10.231.0.1:8099/bookworm-security", "x")
    assert pkg.url == (
        "http://10.231.0.1:8099/bookworm-security/zlib1g_1%253a1.2.13.dfsg-1%2Bdeb12u1_amd64.deb"
    )
    (local,) = parse_packages(stanza, "/srv/repo", "x")
    assert local.url == "/srv/repo/zlib1g_1%3a1.2.13.dfsg-1+deb12u1_amd64.deb"


REAL_DEB = Path(__file__).parents[2] / "data/debs/zlib1g_1.2.13.dfsg-1+deb12u1_amd64.deb"
"""Debian's own zlib1g from bookworm-security, as the lab repository serves it (copied
from there, unchanged): the changelog source on a real package, epoch included."""


def test_the_real_deb_from_debian_security(tmp_path: Path, signing_key: SigningKey) -> None:
    import shutil

    from orchestrator.advisories.exposure import Catalog, Installed

    entries = read_changelog(REAL_DEB, "zlib1g", str(REAL_DEB))
    assert entries is not None
    assert entries[0] == {"version": "1:1.2.13.dfsg-1+deb12u1", "urgency": "high",
                          "cves": ["CVE-2026-27171", "CVE-2026-85091"]}
    assert {"version": "1:1.2.11.dfsg-4.1", "urgency": "medium",
            "cves": ["CVE-2022-37434"]} in entries
    repo = tmp_path / "repo"
    repo.mkdir()
    shutil.copy(REAL_DEB, repo)
    flat_repo(repo, signing_key)
    image = "1:1.2.13.dfsg-1"  # what the lab's bookworm image has
    data = _source(tmp_path, repo, signing_key).load({"zlib": image})
    host = Catalog(data.vulnerabilities).open_on(
        "h", [Installed("zlib1g", image, "zlib", image)])
    assert {c.cve for c in host.open} == {"CVE-2026-27171", "CVE-2026-85091"}
    assert {(c.fixed_version, c.urgency, c.available_version) for c in host.open} == {
        ("1:1.2.13.dfsg-1+deb12u1", "high", "1:1.2.13.dfsg-1+deb12u1")}
