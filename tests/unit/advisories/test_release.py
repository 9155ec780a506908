"""Authenticated repository indexes (issue 21, item 3), against a local mirror on 127.0.0.1:
the signed InRelease is verified with the configured keyring (gpgv), the Packages index
against its SHA256, each .deb against the index. The issue's attack: a mirror rewrites the
index so an unpatched host's open CVE disappears. It works against an unauthenticated
repository (shown with `trusted: true`) and is refused, naming the repository and what
failed, against a signed one."""

from __future__ import annotations

import gzip
import shutil
from pathlib import Path

import pytest
from pydantic import ValidationError

from orchestrator.advisories.catalog import load_catalog
from orchestrator.advisories.exposure import Catalog, parse_installed
from orchestrator.advisories.settings import AdvisorySettings
from orchestrator.errors import BadInput
from tests.unit.advisories.feeds import (
    DEB_CHANGELOG,
    DPKG_QUERY_OUTPUT,
    OPENSSL_FIXED,
    OPENSSL_INSTALLED,
    SigningKey,
    build_deb,
    flat_repo,
    write_release,
)

OLD_CHANGELOG = DEB_CHANGELOG[DEB_CHANGELOG.index(f"openssl ({OPENSSL_INSTALLED})"):]
CVE = "CVE-2026-84782"  # fixed in OPENSSL_FIXED, open on a host with OPENSSL_INSTALLED



@pytest.fixture
def repo(mirror: tuple[str, Path], signing_key: SigningKey) -> tuple[str, Path]:
    """A signed flat repository on the mirror offering the fixed openssl."""
    url, www = mirror
    folder = www / "security"
    folder.mkdir()
    build_deb(folder, "openssl", OPENSSL_FIXED, "openssl", DEB_CHANGELOG)
    flat_repo(folder, signing_key)
    return f"{url}/security", folder


def _open_cves(repo_url: str, tmp_path: Path, **trust: object) -> tuple[set[str], list[str]]:
    entry: object = {"line": f"{repo_url} ./", **trust} if trust else f"{repo_url} ./"
    settings = AdvisorySettings.model_validate({"repositories": [entry]})
    catalog: Catalog = load_catalog(settings, tmp_path / "cache")
    host = catalog.open_on("web-blue-1", parse_installed(DPKG_QUERY_OUTPUT))
    return {c.cve for c in host.open}, catalog.notes


def _rewrite_index(folder: Path) -> None:
    """The attack: the index now offers the vulnerable openssl (a real, unmodified older
    package whose changelog does not name the CVE), with that package's true SHA256."""
    for deb in folder.glob("*.deb"):
        deb.unlink()
    build_deb(folder, "openssl", OPENSSL_INSTALLED, "openssl", OLD_CHANGELOG)
    InRelease = folder / "InRelease"  # noqa: N806 - the file's name
    kept = InRelease.read_bytes()
    flat_repo(folder)  # new Packages, Packages.gz and Release, not signed
    InRelease.write_bytes(kept)  # the old signature stays: the attacker has no key


def test_a_signed_repository_is_read(repo: tuple[str, Path], tmp_path: Path,
                                     signing_key: SigningKey) -> None:
    cves, notes = _open_cves(repo[0], tmp_path, keyring=str(signing_key.keyring))
    assert CVE in cves
    assert not [n for n in notes if "not authenticated" in n]


def test_a_rewritten_index_is_refused(repo: tuple[str, Path], tmp_path: Path,
                                      signing_key: SigningKey) -> None:
    url, folder = repo
    _rewrite_index(folder)
    # unauthenticated, the attack works: the open CVE disappears (what the issue found)
    cves, notes = _open_cves(url, tmp_path / "a", trusted=True)
    assert CVE not in cves
    assert any("not authenticated (trusted: true)" in n for n in notes)
    # authenticated: one clear error naming the repository and what failed
    with pytest.raises(BadInput) as refused:
        _open_cves(url, tmp_path / "b", keyring=str(signing_key.keyring))
    message = refused.value.message
    assert f"apt repository {url} ./" in message
    assert "Packages.gz" in message and "the signed InRelease" in message
    assert "changed after it was signed" in message


def test_a_bad_signature_is_refused(repo: tuple[str, Path], tmp_path: Path,
                                    signing_key: SigningKey, other_key: SigningKey) -> None:
    url, folder = repo
    _rewrite_index(folder)
    other_key.clearsign(folder / "Release", folder / "InRelease")  # signed, by the attacker
    with pytest.raises(BadInput, match=r"InRelease: bad signature, or not by a key of .*"
                       r"\(gpgv: .*NO_PUBKEY"):
        _open_cves(url, tmp_path, keyring=str(signing_key.keyring))
    # a signed text edited afterwards: the signature no longer matches
    signing_key.clearsign(folder / "Release", folder / "InRelease")
    text = (folder / "InRelease").read_text()
    (folder / "InRelease").write_text(text.replace("Origin: test", "Origin: tset"))
    with pytest.raises(BadInput, match=r"bad signature.*BADSIG"):
        _open_cves(url, tmp_path / "2", keyring=str(signing_key.keyring))
    # the default keyring (Debian's) does not know the lab's or a test's key either
    signing_key.clearsign(folder / "Release", folder / "InRelease")
    with pytest.raises(BadInput, match="debian-archive-keyring.gpg"):
        _open_cves(url, tmp_path / "3")


def test_unsigned_only_when_trusted(repo: tuple[str, Path], tmp_path: Path) -> None:
    url, folder = repo
    (folder / "InRelease").unlink()
    with pytest.raises(BadInput, match=r"unsigned: neither InRelease nor Release \+ "
                       r"Release.gpg.*\n.*trusted: true"):
        _open_cves(url, tmp_path / "a")
    cves, notes = _open_cves(url, tmp_path / "b", trusted=True)
    assert CVE in cves
    assert notes == [f"apt repository {url} ./: not authenticated (trusted: true): its "
                     "indexes and packages are taken as served"]


def test_release_and_detached_signature(repo: tuple[str, Path], tmp_path: Path,
                                        signing_key: SigningKey) -> None:
    url, folder = repo
    (folder / "InRelease").unlink()
    signing_key.detach_sign(folder / "Release", folder / "Release.gpg")
    assert CVE in _open_cves(url, tmp_path / "a", keyring=str(signing_key.keyring))[0]
    (folder / "Packages.gz").write_bytes(gzip.compress(b"Package: x\n"))
    with pytest.raises(BadInput, match=r"Packages.gz: \d+ bytes, the signed Release says"):
        _open_cves(url, tmp_path / "b", keyring=str(signing_key.keyring))


def test_an_expired_release_is_refused(repo: tuple[str, Path], tmp_path: Path,
                                       signing_key: SigningKey) -> None:
    url, folder = repo
    write_release(folder, "Valid-Until: Sat, 01 Jan 2022 00:00:00 UTC")
    signing_key.clearsign(folder / "Release", folder / "InRelease")
    with pytest.raises(BadInput, match=r"expired \(Valid-Until Sat, 01 Jan 2022"):
        _open_cves(url, tmp_path, keyring=str(signing_key.keyring))


def test_a_suite_repository(mirror: tuple[str, Path], tmp_path: Path,
                            signing_key: SigningKey) -> None:
    """`URL SUITE COMPONENT`: InRelease in dists/SUITE, indexes named relative to it."""
    url, www = mirror
    pool = www / "debian"
    flat = tmp_path / "flat"
    flat.mkdir()
    build_deb(flat, "openssl", OPENSSL_FIXED, "openssl", DEB_CHANGELOG)
    flat_repo(flat)
    binary = pool / "dists/bookworm-security/main/binary-amd64"
    binary.mkdir(parents=True)
    shutil.copy(next(flat.glob("*.deb")), pool)
    for name in ("Packages", "Packages.gz"):
        shutil.copy(flat / name, binary / name)
    dist = pool / "dists/bookworm-security"
    lines = ["Suite: bookworm-security", "SHA256:"]
    import hashlib

    for name in ("Packages", "Packages.gz"):
        data = (binary / name).read_bytes()
        lines.append(f" {hashlib.sha256(data).hexdigest()} {len(data)} main/binary-amd64/{name}")
    (dist / "Release").write_text("\n".join(lines) + "\n")
    signing_key.clearsign(dist / "Release", dist / "InRelease")
    settings = AdvisorySettings.model_validate({
        "repositories": [f"{url}/debian bookworm-security main"],
        "keyring": str(signing_key.keyring)})
    catalog = load_catalog(settings, tmp_path / "cache")
    assert CVE in {c.cve for c in catalog.open_on("h", parse_installed(DPKG_QUERY_OUTPUT)).open}
    # the same archive key's Release of another suite (bookworm, without the security fixes)
    # served as bookworm-security: signed correctly, and still refused (review D8)
    (dist / "Release").write_text("\n".join(["Suite: stable", "Codename: bookworm",
                                             *lines[1:]]) + "\n")
    signing_key.clearsign(dist / "Release", dist / "InRelease")
    with pytest.raises(BadInput, match=r"signed for another suite \(Codename: bookworm, "
                       r"Suite: stable\), not bookworm-security"):
        load_catalog(settings, tmp_path / "cache2")


@pytest.mark.parametrize(("entry", "error"), [
    ({"line": "http://h/r ./", "trusted": True, "keyring": "/k.gpg"}, "remove `keyring:`"),
    ({"line": "http://h/r ./", "keyring": "keys/k.gpg"}, "give an absolute path"),
    ({"line": "http://h/r ./", "trusted": "yes please"}, "trusted"),
    ("deb [trusted=yes] http://h/r ./", "keyring or `trusted: true` goes beside it"),
    ({"line": "http://h/r ./", "signed_by": "/k.gpg"}, "signed_by"),
])
def test_trust_settings_are_validated(entry: object, error: str) -> None:
    with pytest.raises(ValidationError, match=error):
        AdvisorySettings.model_validate({"repositories": [entry]})


def test_one_good_signature_of_several_suffices(repo: tuple[str, Path], tmp_path: Path) -> None:
    """Debian signs a Release with several keys (the current and the next archive key): a
    keyring that has one of them accepts it, as apt does (gpgv then exits non-zero)."""
    url, folder = repo
    both = SigningKey(tmp_path / "both", "current archive key")
    try:
        both._gpg("--quick-gen-key", "next archive key <next@test.invalid>", "ed25519",
                  "sign", "never")
        both._gpg("--local-user", "current archive key", "--local-user", "next archive key",
                  "--clearsign", "-o", str(folder / "InRelease"), str(folder / "Release"))
    finally:
        both.close()
    assert (folder / "InRelease").read_text().count("BEGIN PGP SIGNATURE") == 1
    only_current = tmp_path / "current.gpg"
    both._gpg("--export", "-o", str(only_current), "current archive key")
    assert CVE in _open_cves(url, tmp_path / "a", keyring=str(only_current))[0]
