"""Versions that pass our syntax check but python-debian (the comparer) rejects, from one
host or one feed entry: that entry is skipped with a "not read" note, the rest of the fleet
and of the feed is judged as usual, and nothing raises."""

from __future__ import annotations

from pathlib import Path

import pytest

from orchestrator.advisories import versions
from orchestrator.advisories.exposure import Catalog, parse_installed
from orchestrator.advisories.fetch import FetchPolicy
from orchestrator.advisories.osv import OsvSource
from orchestrator.advisories.repository import parse_packages
from orchestrator.advisories.tracker import TrackerSource
from tests.unit.advisories.feeds import (
    DPKG_QUERY_OUTPUT,
    OPENSSL_FIXED,
    OPENSSL_INSTALLED,
    ZLIB_FIXED,
    osv_record,
    tracker_document,
    tracker_release,
    write_json,
)

UNREADABLE = ["1.0-1:2", "z:1"]


@pytest.mark.parametrize("bad", UNREADABLE)
def test_syntax_passes_but_python_debian_rejects(bad: str) -> None:
    assert versions.is_valid(bad)  # what used to let it through
    with pytest.raises(ValueError):
        versions.parse(bad)
    assert not versions.readable(bad)
    assert versions.readable(OPENSSL_FIXED) and versions.readable("1:1.2.13.dfsg-1")


@pytest.mark.parametrize("bad", UNREADABLE)
def test_a_host_package_is_not_read_the_others_are(bad: str) -> None:
    notes: list[str] = []
    text = DPKG_QUERY_OUTPUT + f"ii \tevil\t{bad}\tevil\t{bad}\n"
    text += f"ii \tlibexpat1-dev\t2.5.0-1\texpat\t{bad}\n"  # a bad source version: the binary's
    found = {p.name: p for p in parse_installed(text, notes)}
    assert "evil" not in found and "libssl3" in found
    assert found["libexpat1-dev"].source_version == "2.5.0-1"
    assert notes == [versions.not_read("package 'evil'", bad)]
    assert "not read" in notes[0] and bad in notes[0]


@pytest.mark.parametrize("bad", UNREADABLE)
def test_a_tracker_entry_is_skipped_with_a_note(tmp_path: Path, bad: str) -> None:
    doc = tracker_document()
    doc["openssl"]["CVE-2026-9999"] = {"releases": {"bookworm": tracker_release("resolved", bad)}}
    feed = write_json(tmp_path / "tracker.json", doc)
    data = TrackerSource(str(feed), "bookworm", FetchPolicy(cache_dir=tmp_path / "c")).load()
    cves = {v.cve for v in data.vulnerabilities}
    assert "CVE-2026-84782" in cves and "CVE-2023-45853" in cves
    assert "CVE-2026-9999" not in cves
    (note,) = [n for n in data.notes if "not read" in n]
    assert "openssl.CVE-2026-9999" in note and bad in note
    # and the whole join works on it: the fleet is judged, nothing raises
    host = Catalog(data.vulnerabilities).open_on("h", parse_installed(DPKG_QUERY_OUTPUT))
    assert "CVE-2026-84782" in {c.cve for c in host.open}


@pytest.mark.parametrize("bad", UNREADABLE)
def test_an_osv_record_is_skipped_with_a_note(tmp_path: Path, bad: str) -> None:
    feed = write_json(tmp_path / "osv.json", [
        osv_record("CVE-2026-84782", "openssl", OPENSSL_FIXED),
        osv_record("CVE-2026-9999", "openssl", bad),
        osv_record("CVE-2023-45853", "zlib", ZLIB_FIXED, introduced=bad),
    ])
    data = OsvSource(str(feed), "Debian:12", FetchPolicy(cache_dir=tmp_path / "c")).load()
    assert {v.cve for v in data.vulnerabilities} == {"CVE-2026-84782"}
    notes = [n for n in data.notes if "not read" in n]
    assert len(notes) == 2 and all(bad in n for n in notes)
    assert "CVE-2026-9999" in notes[0] and "CVE-2023-45853" in notes[1]


@pytest.mark.parametrize("bad", UNREADABLE)
def test_a_packages_stanza_is_skipped_with_a_note(bad: str) -> None:
    stanza = (
        f"Package: openssl\nVersion: {OPENSSL_FIXED}\nFilename: ./openssl.deb\n"
        f"SHA256: {'a' * 64}\nSize: 10\n\n"
        f"Package: evil\nVersion: {bad}\nFilename: ./evil.deb\nSHA256: {'b' * 64}\nSize: 10\n\n"
        f"Package: libevil\nSource: evil ({bad})\nVersion: {OPENSSL_INSTALLED}\n"
        f"Filename: ./libevil.deb\nSHA256: {'c' * 64}\nSize: 10\n"
    )
    notes: list[str] = []
    found = parse_packages(stanza, "/srv/repo", "Packages", notes)
    assert [p.name for p in found] == ["openssl"]
    assert len(notes) == 2 and all("not read" in n and bad in n for n in notes)
    assert "stanza 2" in notes[0] and "stanza 3" in notes[1]


def test_deeply_nested_feeds_are_one_clear_error(tmp_path: Path) -> None:
    from orchestrator.errors import BadInput

    deep = "[" * 50_000 + "]" * 50_000
    osv = tmp_path / "osv.json"
    osv.write_text(deep)
    with pytest.raises(BadInput, match=r"osv.json: nested deeper than 64 levels"):
        OsvSource(str(osv), "Debian:12", FetchPolicy(cache_dir=tmp_path / "c")).load()
    tracker = tmp_path / "tracker.json"
    tracker.write_text('{"openssl": {"CVE-2026-1": ' + deep + "}}")
    with pytest.raises(BadInput, match=r"tracker.json: openssl: nested deeper than 64"):
        TrackerSource(str(tracker), "bookworm", FetchPolicy(cache_dir=tmp_path / "c")).load()
