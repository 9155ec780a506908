from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from orchestrator.advisories.base import Vulnerability
from orchestrator.advisories.exposure import Catalog, parse_installed
from orchestrator.campaign.model import load_campaign, packages_for
from orchestrator.campaign.new import build_campaign, write_new_campaign
from orchestrator.errors import BadInput
from orchestrator.probes.exposure import FleetExposure, SideExposure
from tests.unit.advisories.feeds import (
    DPKG_QUERY_OUTPUT,
    OPENSSL_FIXED,
    OPENSSL_FIXED_EARLIER,
    OPENSSL_INSTALLED,
    ZLIB_FIXED,
)


def _found(threshold: str = "low", **catalog_kw: object) -> FleetExposure:
    catalog = Catalog(
        [
            Vulnerability("CVE-2026-84782", "openssl", OPENSSL_FIXED, "high", "changelog"),
            Vulnerability("CVE-2026-35189", "openssl", OPENSSL_FIXED, "high", "changelog"),
            Vulnerability("CVE-2026-42767", "openssl", OPENSSL_FIXED_EARLIER, "medium", "changelog"),
            Vulnerability("CVE-2023-45853", "zlib", ZLIB_FIXED, "low", "changelog"),
            Vulnerability("CVE-2026-0002", "openssl", None, "high", "changelog"),
        ],
        feeds=["changelog http://10.231.0.1:8099/bookworm-security ./"],
        **catalog_kw,  # type: ignore[arg-type]
    )
    installed = parse_installed(DPKG_QUERY_OUTPUT)
    sides = [
        SideExposure(svc, side, [catalog.open_on(f"{svc}-{side}-1", installed)])
        for svc in ("web", "api")
        for side in ("blue", "green")
    ]
    return FleetExposure(threshold, catalog, sides)


def test_grouped_by_fixed_version_with_one_pin_per_source() -> None:
    made = build_campaign(
        _found(available={"openssl": OPENSSL_FIXED, "zlib": ZLIB_FIXED},
               binaries={"libssl3": OPENSSL_FIXED, "openssl": OPENSSL_FIXED,
                         "zlib1g": ZLIB_FIXED}),
        ["web", "api"],
        name="sec-test",
    )
    assert made.doc is not None
    ids = [a["id"] for a in made.doc["advisories"]]
    assert ids == [f"openssl-{OPENSSL_FIXED_EARLIER}", f"openssl-{OPENSSL_FIXED}",
                   f"zlib-{ZLIB_FIXED}"]
    first, second, zlib = made.doc["advisories"]
    assert second["cves"] == ["CVE-2026-35189", "CVE-2026-84782"]
    assert second["severity"] == "high" and first["severity"] == "medium"
    # both openssl advisories pin what closes all of them
    assert first["packages"] == second["packages"] == {"libssl3": OPENSSL_FIXED,
                                                      "openssl": OPENSSL_FIXED}
    assert zlib["packages"] == {"zlib1g": ZLIB_FIXED}
    assert first["applies_to"] == ["web", "api"]
    assert [w["services"] for w in made.doc["waves"]] == [["web"], ["api"]]
    assert (made.advisories, made.cves, made.packages) == (3, 4, 3)
    assert any("CVE-2026-0002" in n and "no fix yet" in n for n in made.notes)


def test_fixes_the_repositories_do_not_offer_are_left_out() -> None:
    made = build_campaign(_found(available={"openssl": OPENSSL_FIXED}), ["web"])
    assert made.doc is not None
    assert [a["id"].split("-")[0] for a in made.doc["advisories"]] == ["openssl", "openssl"]
    assert any("CVE-2023-45853" in n and "not offered" in n for n in made.notes)


def test_threshold() -> None:
    made = build_campaign(_found("high"), ["web"])
    assert made.doc is not None
    assert [a["cves"] for a in made.doc["advisories"]] == [["CVE-2026-35189", "CVE-2026-84782"]]


def test_written_file_loads_and_is_never_overwritten(tmp_path: Path) -> None:
    out = tmp_path / "campaign.yml"
    made = write_new_campaign(_found(), ["web"], out, name="sec-test")
    assert made.path == out
    text = out.read_text()
    assert text.startswith("# Written by `bluegreen campaign new`")
    camp = load_campaign(out)
    assert camp.name == "sec-test"
    assert {p.name: p.version for p in packages_for(camp, "web")} == {
        "libssl3": OPENSSL_FIXED, "openssl": OPENSSL_FIXED, "zlib1g": ZLIB_FIXED}
    assert yaml.safe_load(text)["advisories"][0]["cves"]
    with pytest.raises(BadInput, match="never overwrites"):
        write_new_campaign(_found(), ["web"], out)


def test_nothing_open_writes_nothing(tmp_path: Path) -> None:
    made = write_new_campaign(_found("critical"), ["web"], tmp_path / "c.yml")
    assert made.path is None and not (tmp_path / "c.yml").exists()


TELNETD = "ii \tinetutils-telnetd\t2:2.4-2\topenssl\t" + OPENSSL_INSTALLED + "\n"
INJECTED = "ii \tevil\x1b]0;owned\x07\x9b2K\t1.0-1\topenssl\t" + OPENSSL_INSTALLED + "\n"


def _one_host_lies(**catalog_kw: object) -> FleetExposure:
    """web's four hosts; web-blue-1 (root on it) says inetutils-telnetd is built from openssl."""
    catalog = Catalog(
        [Vulnerability("CVE-2026-84782", "openssl", OPENSSL_FIXED, "high", "changelog")],
        feeds=["changelog http://10.231.0.1:8099/bookworm-security ./"],
        available={"openssl": OPENSSL_FIXED},
        **catalog_kw,  # type: ignore[arg-type]
    )
    honest = parse_installed(DPKG_QUERY_OUTPUT)
    liar = parse_installed(DPKG_QUERY_OUTPUT + TELNETD)
    sides = [
        SideExposure("web", side, [
            catalog.open_on(f"web-{side}-{n}", liar if (side, n) == ("blue", 1) else honest)
            for n in (1, 2)])
        for side in ("blue", "green")
    ]
    return FleetExposure("low", catalog, sides)


@pytest.mark.parametrize("index", [True, False])
def test_one_host_cannot_widen_a_campaign(tmp_path: Path, index: bool) -> None:
    """The repository's index says inetutils-telnetd is built from inetutils (index=True);
    without a repository index, 1 of 4 hosts is a minority (index=False). Either way it is
    not pinned (it would be installed on every host of web); the header says why."""
    sources_of = {"libssl3": {"openssl"}, "openssl": {"openssl"},
                  "inetutils-telnetd": {"inetutils"}}
    found = _one_host_lies(**({"sources_of": sources_of} if index else {}))
    made = write_new_campaign(found, ["web"], tmp_path / "c.yml", name="sec-test")
    assert made.doc is not None
    (advisory,) = made.doc["advisories"]
    assert set(advisory["packages"]) == {"libssl3", "openssl"}
    text = (tmp_path / "c.yml").read_text()
    header = [line for line in text.splitlines() if "inetutils-telnetd" in line]
    assert header and all(line.startswith("# not pinned: inetutils-telnetd: ") for line in header)
    assert "1 of 4 host(s) with openssl open" in header[0] and "web-blue-1" in header[0]
    assert ("says it is built from inetutils" if index else "only 1 of 4") in header[0]
    assert load_campaign(tmp_path / "c.yml").advisories[0].packages.keys() == {"libssl3",
                                                                              "openssl"}


def test_a_hosts_package_name_cannot_end_the_header_comment(tmp_path: Path) -> None:
    """A name with escapes (from one host's dpkg; a newline cannot be in it, lines are split
    first) is one visible comment line."""
    found = _one_host_lies()
    liar = parse_installed(DPKG_QUERY_OUTPUT + INJECTED)
    found.sides[0].hosts[0] = found.catalog.open_on("web-blue-1", liar)
    write_new_campaign(found, ["web"], tmp_path / "c.yml", name="sec-test")
    text = (tmp_path / "c.yml").read_text()
    assert "\x1b" not in text and "\x07" not in text and "\x9b" not in text
    assert "# not pinned: evil\\x1b]0;owned\\x07\\x9b2K: only 1 of 4 host(s)" in text
    assert yaml.safe_load(text).keys() == {"name", "description", "advisories", "waves",
                                           "approval", "window"}


def test_without_an_index_one_of_two_hosts_cannot_pin_for_both(tmp_path: Path) -> None:
    """Two hosts with openssl open, no repository index: the one that lies is half of them,
    which is no longer enough (review D5); the honest names both report are pinned."""
    found = _one_host_lies()
    for side in found.sides:  # keep one host per side: web-blue-1 (the liar), web-green-1
        side.hosts[:] = side.hosts[:1]
    made = write_new_campaign(found, ["web"], tmp_path / "c.yml", name="sec-test")
    assert made.doc is not None
    (advisory,) = made.doc["advisories"]
    assert set(advisory["packages"]) == {"libssl3", "openssl"}
    text = (tmp_path / "c.yml").read_text()
    assert "# not pinned: inetutils-telnetd: only 1 of 2 host(s)" in text
    assert "no repository index to check" in text
