"""Feeds written by the tests in the published formats, with real Debian 12 package names
and versions (those of the lab image and of the lab's bookworm-security suite)."""

from __future__ import annotations

import gzip
import hashlib
import json
import subprocess
from pathlib import Path
from typing import Any

# what the lab image has, and what bookworm-security offered when the lab was made
OPENSSL_INSTALLED = "3.0.20-1~deb12u2"
OPENSSL_FIXED = "3.0.22-1~deb12u2"
OPENSSL_FIXED_EARLIER = "3.0.22-1~deb12u1"
ZLIB_INSTALLED = "1:1.2.13.dfsg-1"
ZLIB_FIXED = "1:1.2.13.dfsg-1+deb12u1"
EXPAT_INSTALLED = "2.5.0-1+deb12u2"
EXPAT_FIXED = "2.5.0-1+deb12u5"

DPKG_QUERY_OUTPUT = "".join(
    f"ii \t{b}\t{v}\t{s}\t{sv}\n"
    for b, v, s, sv in [
        ("libssl3", OPENSSL_INSTALLED, "openssl", OPENSSL_INSTALLED),
        ("openssl", OPENSSL_INSTALLED, "openssl", OPENSSL_INSTALLED),
        ("zlib1g", ZLIB_INSTALLED, "zlib", ZLIB_INSTALLED),
        ("libexpat1", EXPAT_INSTALLED, "expat", EXPAT_INSTALLED),
        ("libpython3.11-stdlib", "3.11.2-6+deb12u8", "python3.11", "3.11.2-6+deb12u8"),
        ("sudo", "1.9.13p3-1+deb12u1", "sudo", "1.9.13p3-1+deb12u1"),
    ]
) + "rc \told-package\t1.0-1\told-package\t1.0-1\n"


def tracker_release(
    status: str, fixed: str | None, urgency: str = "not yet assigned", **extra: Any
) -> dict[str, Any]:
    rel: dict[str, Any] = {"status": status, "repositories": {"bookworm": OPENSSL_INSTALLED},
                           "urgency": urgency}
    if fixed is not None:
        rel["fixed_version"] = fixed
    rel.update(extra)
    return rel


def tracker_document() -> dict[str, Any]:
    """The Security Tracker's JSON for a few packages (its published shape)."""
    return {
        "openssl": {
            "CVE-2026-84782": {
                "description": "DTLS Retransmits Handshake Messages From a Stale Buffer Offset",
                "scope": "remote",
                "releases": {
                    "bookworm": tracker_release("resolved", OPENSSL_FIXED, "high"),
                    "trixie": tracker_release("resolved", "3.5.5-1~deb13u1", "high"),
                },
            },
            "CVE-2026-42767": {
                "description": "NULL dereference in OSSL_CRMF_ENCRYPTEDVALUE_get1_encCert()",
                "scope": "remote",
                "releases": {
                    "bookworm": tracker_release("resolved", OPENSSL_FIXED_EARLIER, "medium"),
                },
            },
            "CVE-2026-7383": {  # fixed in what the image has
                "scope": "remote",
                "releases": {"bookworm": tracker_release("resolved", OPENSSL_INSTALLED, "low")},
            },
            "CVE-2026-0002": {  # no fix yet
                "scope": "local",
                "releases": {"bookworm": tracker_release("open", None, "unimportant")},
            },
            "TEMP-0000000-A1B2C3": {
                "releases": {"bookworm": tracker_release("open", None)},
            },
        },
        "zlib": {
            "CVE-2023-45853": {
                "description": "MiniZip integer overflow",
                "releases": {
                    "bookworm": tracker_release("resolved", ZLIB_FIXED, "low*", nodsa="Minor issue"),
                },
            },
            "CVE-2018-25032": {  # never affected bookworm
                "releases": {"bookworm": tracker_release("resolved", "0", "unimportant")},
            },
        },
        "sudo": {
            "CVE-2023-42465": {
                "releases": {"bookworm": tracker_release("undetermined", None)},
            },
        },
    }


def osv_record(
    cve: str,
    source: str,
    fixed: str | None,
    *,
    ecosystem: str = "Debian:12",
    urgency: str | None = "high",
    introduced: str = "0",
    record_id: str | None = None,
) -> dict[str, Any]:
    """An OSV record as Debian's converter publishes them (osv.dev, ecosystem Debian:12)."""
    events: list[dict[str, str]] = [{"introduced": introduced}]
    if fixed is not None:
        events.append({"fixed": fixed})
    affected: dict[str, Any] = {
        "package": {
            "ecosystem": ecosystem,
            "name": source,
            "purl": f"pkg:deb/debian/{source}?arch=source",
        },
        "ranges": [{"type": "ECOSYSTEM", "events": events}],
    }
    if urgency is not None:
        affected["ecosystem_specific"] = {"urgency": urgency}
    return {
        "schema_version": "1.6.0",
        "id": record_id or f"DEBIAN-{cve}",
        "modified": "2026-11-01T00:00:00Z",
        "upstream": [cve],
        "summary": f"{source} security update",
        "affected": [affected],
    }


def write_json(path: Path, doc: object, *, gz: bool = False) -> Path:
    data = json.dumps(doc).encode()
    path.write_bytes(gzip.compress(data) if gz else data)
    return path


DEB_CHANGELOG = """\
openssl (3.0.22-1~deb12u2) bookworm-security; urgency=high

  * Non-maintainer upload by the LTS Team.
  * CVE-2026-84782 ("DTLS Retransmits Handshake Messages From a Stale Buffer
    Offset")
  * CVE-2026-35189 ("Memory Allocation in Relative CRLDP Processing")

 -- Arnaud Rebillout <arnaudr@debian.org>  Wed, 21 Oct 2026 16:54:24 +0700

openssl (3.0.22-1~deb12u1) bookworm-security; urgency=medium

  * Import 3.0.22
  * CVE-2026-42767 ("Fix potential NULL dereference in
    OSSL_CRMF_ENCRYPTEDVALUE_get1_encCert()")
  * Follow-up for CVE-2026-35189.

 -- Arnaud Rebillout <arnaudr@debian.org>  Wed, 23 Sep 2026 10:52:17 +0700

openssl (3.0.20-1~deb12u2) bookworm-security; urgency=medium

  * CVE-2026-7383 ("Possible Heap Buffer Overflow in ASN.1 Multibyte String
    Conversion")

 -- Sebastian Andrzej Siewior <sebastian@breakpoint.cc>  Sat, 06 Jun 2026 21:56:20 +0200
"""


def build_deb(
    out: Path, name: str, version: str, source: str, changelog: str | None, *, arch: str = "amd64"
) -> Path:
    """A real binary package made by dpkg-deb, with its changelog where Debian puts it."""
    root = out / f"build-{name}-{version}"
    (root / "DEBIAN").mkdir(parents=True)
    doc = root / "usr/share/doc" / name
    doc.mkdir(parents=True)
    if changelog is not None:
        (doc / "changelog.Debian.gz").write_bytes(gzip.compress(changelog.encode(), mtime=0))
    src = f"Source: {source}\n" if source != name else ""
    (root / "DEBIAN/control").write_text(
        f"Package: {name}\nVersion: {version}\n{src}Architecture: {arch}\n"
        "Maintainer: test <test@example.invalid>\nDescription: test package\n"
    )
    target = out / f"{name}_{version.replace(':', '%3a')}_{arch}.deb"
    subprocess.run(
        ["dpkg-deb", "--root-owner-group", "-Zxz", "--build", str(root), str(target)],
        check=True, capture_output=True,
    )
    return target


def flat_repo(folder: Path, key: SigningKey | None = None) -> None:
    """Packages + Packages.gz of the .debs in `folder`, as dpkg-scanpackages writes them, and
    a Release listing them; signed (InRelease) when a key is given."""
    text = subprocess.run(
        ["dpkg-scanpackages", "--multiversion", ".", "/dev/null"],
        cwd=folder, check=True, capture_output=True, text=True,
    ).stdout
    (folder / "Packages").write_text(text)
    (folder / "Packages.gz").write_bytes(gzip.compress(text.encode(), mtime=0))
    write_release(folder)
    if key is not None:
        key.clearsign(folder / "Release", folder / "InRelease")


def write_release(folder: Path, extra: str = "") -> None:
    lines = ["Origin: test", "Label: test", "Suite: ./", extra, "SHA256:"]
    for name in ("Packages", "Packages.gz"):
        data = (folder / name).read_bytes()
        lines.append(f" {hashlib.sha256(data).hexdigest()} {len(data)} {name}")
    (folder / "Release").write_text("\n".join(line for line in lines if line) + "\n")


class SigningKey:
    """A repository signing key made as the lab makes its own: gpg --quick-gen-key, no
    passphrase, in a GnuPG home of its own; `keyring` is its public keyring (binary)."""

    def __init__(self, home: Path, name: str = "bluegreen test repository") -> None:
        self.home = home
        home.mkdir(mode=0o700, parents=True, exist_ok=True)
        self._gpg("--quick-gen-key", f"{name} <repo@test.invalid>", "ed25519", "sign", "never")
        self.keyring = home.parent / f"{home.name}.gpg"
        self.keyring.write_bytes(self._gpg("--export").stdout)

    def _gpg(self, *args: str) -> subprocess.CompletedProcess[bytes]:
        try:
            return subprocess.run(["gpg", "--homedir", str(self.home), "--batch", "--yes",
                                   "--passphrase", "", "--pinentry-mode", "loopback", *args],
                                  check=True, capture_output=True)
        finally:
            self.close()  # no gpg-agent outlives the call (not even a killed test run)

    def clearsign(self, release: Path, target: Path) -> None:
        self._gpg("--clearsign", "-o", str(target), str(release))

    def detach_sign(self, release: Path, target: Path) -> None:
        self._gpg("--detach-sign", "-o", str(target), str(release))

    def close(self) -> None:
        subprocess.run(["gpgconf", "--homedir", str(self.home), "--kill", "gpg-agent"],
                       capture_output=True, check=False)
