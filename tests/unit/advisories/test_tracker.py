from __future__ import annotations

import json
from pathlib import Path

import pytest

from orchestrator.advisories.fetch import FetchPolicy
from orchestrator.advisories.tracker import TrackerSource
from orchestrator.errors import BadInput
from tests.unit.advisories.feeds import (
    OPENSSL_FIXED,
    OPENSSL_FIXED_EARLIER,
    ZLIB_FIXED,
    tracker_document,
    write_json,
)


def _source(tmp_path: Path, doc: object, release: str = "bookworm") -> TrackerSource:
    feed = write_json(tmp_path / "tracker.json", doc)
    return TrackerSource(str(feed), release, FetchPolicy(cache_dir=tmp_path / "cache"))


def test_reads_the_release(tmp_path: Path) -> None:
    data = _source(tmp_path, tracker_document()).load()
    by_cve = {v.cve: v for v in data.vulnerabilities}
    assert by_cve["CVE-2026-84782"].fixed_version == OPENSSL_FIXED
    assert by_cve["CVE-2026-84782"].urgency == "high"
    assert by_cve["CVE-2026-84782"].source == "openssl"
    assert by_cve["CVE-2026-42767"].fixed_version == OPENSSL_FIXED_EARLIER
    assert by_cve["CVE-2023-45853"].fixed_version == ZLIB_FIXED
    assert by_cve["CVE-2023-45853"].urgency == "low"  # "low*" in the tracker
    assert by_cve["CVE-2023-45853"].nodsa
    assert by_cve["CVE-2026-0002"].fixed_version is None  # open: no fix
    assert by_cve["CVE-2023-42465"].fixed_version is None  # undetermined counts as open
    assert by_cve["CVE-2023-42465"].urgency == "unknown"
    assert "CVE-2018-25032" not in by_cve  # fixed_version "0": never affected
    assert any("TEMP-*" in n for n in data.notes)


def test_other_release(tmp_path: Path) -> None:
    data = _source(tmp_path, tracker_document(), "trixie").load()
    assert [(v.cve, v.fixed_version) for v in data.vulnerabilities] == [
        ("CVE-2026-84782", "3.5.5-1~deb13u1")
    ]


def test_only_the_sources_asked(tmp_path: Path) -> None:
    data = _source(tmp_path, tracker_document()).load({"zlib"})
    assert {v.source for v in data.vulnerabilities} == {"zlib"}


def test_the_decoded_release_is_cached(tmp_path: Path) -> None:
    source = _source(tmp_path, tracker_document())
    first = source.load()
    assert len(list((tmp_path / "cache").glob("tracker-*.json"))) == 1
    second = source.load()
    assert first.vulnerabilities == second.vulnerabilities


def test_a_changed_feed_is_decoded_again(tmp_path: Path) -> None:
    doc = tracker_document()
    source = _source(tmp_path, doc)
    source.load()
    del doc["zlib"]
    write_json(tmp_path / "tracker.json", doc)
    assert "zlib" not in {v.source for v in source.load().vulnerabilities}


def _error(tmp_path: Path, content: str | bytes) -> str:
    feed = tmp_path / "bad.json"
    feed.write_bytes(content if isinstance(content, bytes) else content.encode())
    with pytest.raises(BadInput) as info:
        TrackerSource(str(feed), "bookworm", FetchPolicy(cache_dir=tmp_path / "c")).load()
    assert str(feed) in info.value.message
    assert "nothing was decided" in info.value.message
    return info.value.message


def test_truncated(tmp_path: Path) -> None:
    text = json.dumps(tracker_document())
    assert "truncated" in _error(tmp_path, text[: len(text) // 2])
    assert "truncated" in _error(tmp_path, text[:-1])


def test_wrong_types(tmp_path: Path) -> None:
    doc = tracker_document()
    doc["openssl"]["CVE-2026-84782"]["releases"]["bookworm"]["fixed_version"] = 3
    assert "fixed_version: expected a string" in _error(tmp_path, json.dumps(doc))
    doc = tracker_document()
    doc["openssl"]["CVE-2026-84782"]["releases"] = ["bookworm"]
    assert "releases: expected an object" in _error(tmp_path, json.dumps(doc))
    assert "not a JSON object" in _error(tmp_path, "[1, 2]")


def test_odd_version_characters(tmp_path: Path) -> None:
    doc = tracker_document()
    doc["openssl"]["CVE-2026-84782"]["releases"]["bookworm"]["fixed_version"] = "3.0; rm -rf /"
    assert "is not a Debian version" in _error(tmp_path, json.dumps(doc))


def test_a_cve_id_that_is_not_one(tmp_path: Path) -> None:
    doc = tracker_document()
    doc["openssl"]["CVE-20x6-1"] = doc["openssl"].pop("CVE-2026-84782")
    assert "is not a CVE id" in _error(tmp_path, json.dumps(doc))


def test_unknown_status(tmp_path: Path) -> None:
    doc = tracker_document()
    doc["openssl"]["CVE-2026-84782"]["releases"]["bookworm"]["status"] = "fixed-ish"
    assert "status" in _error(tmp_path, json.dumps(doc))


def test_not_utf8_and_garbage_after(tmp_path: Path) -> None:
    assert "UTF-8" in _error(tmp_path, b"\xff\xfe{}")
    assert "data after the end" in _error(tmp_path, json.dumps(tracker_document()) + " {}")
