"""The lab repository is signed with the lab's own key (issue 21, item 3), so the lab runs
the real path: `exposure` verifies its InRelease with the keyring in the lab's
bluegreen.yml, and the hosts' apt with `signed-by`. A copy of the lab's security suite
whose index was rewritten (openssl's fix taken out: the unpatched hosts' open CVEs would
disappear) is refused through the CLI, naming the repository and what failed."""

from __future__ import annotations

import gzip
import shutil
from pathlib import Path

import pytest
import yaml

from orchestrator.lab.lab import Lab
from orchestrator.lab.repokey import HOST_KEYRING
from tests.support.cli import bluegreen, bluegreen_json
from tests.support.lab import hosts_of

pytestmark = pytest.mark.lab


def _without(packages: str, names: set[str]) -> str:
    stanzas = [s for s in packages.split("\n\n") if s.strip()]
    kept = [s for s in stanzas if not any(f"Package: {n}\n" in s + "\n" for n in names)]
    assert len(kept) < len(stanzas)
    return "\n\n".join(kept) + "\n"


def test_the_lab_repository_is_verified_by_exposure_and_by_apt(lab: Lab, tmp_path: Path) -> None:
    suite = lab.paths.repo / "bookworm-security"
    assert (suite / "InRelease").is_file() and (suite / "Release.gpg").is_file()
    copy = tmp_path / "mirror"
    shutil.copytree(suite, copy)
    feed = f"{copy} ./"

    # 1. the untouched copy, verified with the lab's key: openssl's CVEs are open on web
    code, doc = bluegreen_json(lab.paths.config, "exposure", "web", "--feed", feed)
    assert code == 3, doc
    opened = {c["source"] for h in doc["services"]["web"]["sides"]["blue"]["hosts"]
              for c in h["open"]}
    assert "openssl" in opened

    # 2. the index rewritten (openssl's packages taken out), the signature kept: refused
    text = _without((copy / "Packages").read_text(), {"libssl3", "openssl"})
    (copy / "Packages").write_text(text)
    (copy / "Packages.gz").write_bytes(gzip.compress(text.encode()))
    proc = bluegreen(lab.paths.config, "exposure", "web", "--feed", feed, timeout=300)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 2, out
    assert "Traceback" not in out
    errors = [line for line in out.splitlines() if line.lower().startswith("error")]
    assert len(errors) == 1, out
    assert f"apt repository {copy} ./" in errors[0]
    assert "Packages.gz" in errors[0] and "changed after it was signed" in errors[0], out

    # 3. signed by another key (the attacker re-signs): the lab's keyring refuses it
    (copy / "InRelease").write_text((copy / "InRelease").read_text().replace(
        "Origin: bluegreen-lab", "Origin: bluegreen-lab-forged"))
    proc = bluegreen(lab.paths.config, "exposure", "web", "--feed", feed, timeout=300)
    assert proc.returncode == 2 and "InRelease: bad signature" in proc.stderr, proc.stderr

    # 4. the hosts' apt verifies the lab repository with the lab's key (no trusted=yes)
    host = hosts_of(lab, "web", "blue")[0]
    sources = lab.exec(host, ["cat", "/etc/apt/sources.list.d/bluegreen-lab.list"]).stdout
    assert sources.count(f"[signed-by={HOST_KEYRING}]") == 3 and "trusted" not in sources
    assert lab.exec(host, ["test", "-s", HOST_KEYRING], check=False).returncode == 0
    update = lab.exec(host, ["apt-get", "update"], timeout=120, check=False)
    assert update.returncode == 0, update.stdout + update.stderr
    assert "InRelease" in update.stdout
    assert "not signed" not in update.stdout + update.stderr
    assert "NO_PUBKEY" not in update.stdout + update.stderr


def test_an_unsigned_repository_only_when_trusted_and_said(lab: Lab, tmp_path: Path) -> None:
    """The lab's security suite without its signatures: refused as configured; with
    `trusted: true` read, and `exposure` and `campaign new` both say it is not
    authenticated."""
    unsigned = tmp_path / "unsigned"
    shutil.copytree(lab.paths.repo / "bookworm-security", unsigned)
    for name in ("InRelease", "Release.gpg"):
        (unsigned / name).unlink()
    doc = yaml.safe_load(lab.paths.config.read_text())
    doc["advisories"]["repositories"] = [f"{unsigned} ./"]
    cfg = tmp_path / "bluegreen.yml"
    cfg.write_text(yaml.safe_dump(doc))
    proc = bluegreen(cfg, "exposure", "web", timeout=300)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert f"apt repository {unsigned} ./: unsigned" in proc.stderr
    assert "trusted: true" in proc.stderr  # the fix names the setting

    doc["advisories"]["repositories"] = [{"line": f"{unsigned} ./", "trusted": True}]
    cfg.write_text(yaml.safe_dump(doc))
    warning = f"note: apt repository {unsigned} ./: not authenticated (trusted: true)"
    proc = bluegreen(cfg, "exposure", "web", timeout=300)
    assert proc.returncode == 3 and warning in proc.stderr, proc.stderr
    out = tmp_path / "new.yml"
    proc = bluegreen(cfg, "campaign", "new", "--services", "web", "-o", str(out), timeout=300)
    assert proc.returncode == 0 and warning in proc.stderr, proc.stderr
    assert out.is_file()
