from __future__ import annotations

import json
import zipfile
from pathlib import Path

import pytest

from orchestrator.advisories.fetch import FetchPolicy
from orchestrator.advisories.osv import OsvSource
from orchestrator.errors import BadInput
from tests.unit.advisories.feeds import OPENSSL_FIXED, ZLIB_FIXED, osv_record, write_json


def _load(tmp_path: Path, location: Path, ecosystem: str = "Debian:12") -> OsvSource:
    return OsvSource(str(location), ecosystem, FetchPolicy(cache_dir=tmp_path / "cache"))


def test_debian_records(tmp_path: Path) -> None:
    feed = write_json(
        tmp_path / "osv.json",
        [
            osv_record("CVE-2026-84782", "openssl", OPENSSL_FIXED, urgency="high"),
            osv_record("CVE-2023-45853", "zlib", ZLIB_FIXED, urgency="low"),
            osv_record("CVE-2026-0002", "openssl", None, urgency="not yet assigned"),
            osv_record("CVE-2026-1111", "openssl", "3.5.5-1", ecosystem="Debian:13"),
        ],
    )
    vulns = {v.cve: v for v in _load(tmp_path, feed).load().vulnerabilities}
    assert set(vulns) == {"CVE-2026-84782", "CVE-2023-45853", "CVE-2026-0002"}
    assert vulns["CVE-2026-84782"].fixed_version == OPENSSL_FIXED
    assert vulns["CVE-2026-84782"].urgency == "high"
    assert vulns["CVE-2023-45853"].fixed_version == ZLIB_FIXED  # epoch kept
    assert vulns["CVE-2026-0002"].fixed_version is None
    assert vulns["CVE-2026-0002"].urgency == "unknown"


def test_ubuntu_records_and_ecosystem_prefix(tmp_path: Path) -> None:
    record = osv_record(
        "CVE-2026-84782", "openssl", "3.0.2-0ubuntu1.19", ecosystem="Ubuntu:22.04:LTS",
        urgency=None, record_id="UBUNTU-CVE-2026-84782",
    )
    record["severity"] = [{"type": "Ubuntu", "score": "medium"}]
    feed = write_json(tmp_path / "u.json", record)
    (vuln,) = _load(tmp_path, feed, "Ubuntu:22.04").load().vulnerabilities
    assert (vuln.cve, vuln.fixed_version, vuln.urgency) == (
        "CVE-2026-84782", "3.0.2-0ubuntu1.19", "medium"
    )


def test_several_windows(tmp_path: Path) -> None:
    record = osv_record("CVE-2026-5555", "openssl", None)
    record["affected"][0]["ranges"][0]["events"] = [
        {"introduced": "0"}, {"fixed": "3.0.11-1~deb12u2"},
        {"introduced": "3.0.13-1"}, {"fixed": OPENSSL_FIXED},
    ]
    feed = write_json(tmp_path / "w.json", record)
    windows = sorted(
        (v.introduced, v.fixed_version) for v in _load(tmp_path, feed).load().vulnerabilities
    )
    assert windows == [("0", "3.0.11-1~deb12u2"), ("3.0.13-1", OPENSSL_FIXED)]


def test_directory_and_zip(tmp_path: Path) -> None:
    folder = tmp_path / "osv"
    folder.mkdir()
    for i, (cve, src, fix) in enumerate(
        [("CVE-2026-84782", "openssl", OPENSSL_FIXED), ("CVE-2023-45853", "zlib", ZLIB_FIXED)]
    ):
        write_json(folder / f"r{i}.json", osv_record(cve, src, fix))
    assert len(_load(tmp_path, folder).load().vulnerabilities) == 2
    archive = tmp_path / "all.zip"
    with zipfile.ZipFile(archive, "w") as z:
        for f in folder.iterdir():
            z.write(f, f.name)
    data = _load(tmp_path, archive).load({"zlib"})
    assert [v.cve for v in data.vulnerabilities] == ["CVE-2023-45853"]


def _error(tmp_path: Path, doc: object | bytes, name: str = "bad.json") -> str:
    path = tmp_path / name
    path.write_bytes(doc if isinstance(doc, bytes) else json.dumps(doc).encode())
    with pytest.raises(BadInput) as info:
        _load(tmp_path, path).load()
    assert "nothing was decided" in info.value.message
    return info.value.message


def test_hostile(tmp_path: Path) -> None:
    good = osv_record("CVE-2026-84782", "openssl", OPENSSL_FIXED)
    assert "truncated" in _error(tmp_path, json.dumps(good).encode()[:-10])
    bad = json.loads(json.dumps(good))
    bad["upstream"] = ["CVE-2026-8478x"]
    assert "is not a CVE id" in _error(tmp_path, bad)
    bad = json.loads(json.dumps(good))
    bad["affected"][0]["ranges"][0]["events"][1]["fixed"] = "3.0 `id`"
    assert "is not a version" in _error(tmp_path, bad)
    bad = json.loads(json.dumps(good))
    bad["affected"] = {"openssl": 1}
    assert "affected: expected a list" in _error(tmp_path, bad)
    assert "expected an OSV record" in _error(tmp_path, "just a string")
    bad = json.loads(json.dumps(good))
    bad["affected"][0]["package"]["name"] = "Open SSL"
    assert "not a Debian package name" in _error(tmp_path, bad)


def test_damaged_zip(tmp_path: Path) -> None:
    archive = tmp_path / "all.zip"
    with zipfile.ZipFile(archive, "w") as z:
        z.writestr("a.json", json.dumps(osv_record("CVE-2026-84782", "openssl", OPENSSL_FIXED)))
    archive.write_bytes(archive.read_bytes()[:-30])
    with pytest.raises(BadInput, match="zip|JSON"):
        _load(tmp_path, archive).load()


def test_zip_bomb_is_refused(tmp_path: Path) -> None:
    archive = tmp_path / "big.zip"
    with zipfile.ZipFile(archive, "w", compression=zipfile.ZIP_DEFLATED) as z:
        z.writestr("a.json", " " * (3 * 1024 * 1024))
    source = OsvSource(str(archive), "Debian:12",
                       FetchPolicy(cache_dir=tmp_path / "c", max_bytes=1024 * 1024))
    with pytest.raises(BadInput, match="decompresses past 1 MB"):
        source.load()


def test_record_without_a_cve_is_skipped(tmp_path: Path) -> None:
    record = osv_record("CVE-2026-84782", "openssl", OPENSSL_FIXED, record_id="DSA-9999-1")
    record["upstream"] = []
    data = _load(tmp_path, write_json(tmp_path / "d.json", record)).load()
    assert data.vulnerabilities == []
    assert any("without a CVE id" in n for n in data.notes)
