from __future__ import annotations

from orchestrator.advisories.base import Vulnerability, normalize_urgency
from orchestrator.advisories.exposure import (
    Catalog,
    Installed,
    affects,
    parse_installed,
    summarize,
)
from tests.unit.advisories.feeds import (
    DPKG_QUERY_OUTPUT,
    OPENSSL_FIXED,
    OPENSSL_FIXED_EARLIER,
    OPENSSL_INSTALLED,
    ZLIB_FIXED,
    ZLIB_INSTALLED,
)


def test_parse_installed_maps_binaries_to_sources() -> None:
    installed = {p.name: p for p in parse_installed(DPKG_QUERY_OUTPUT)}
    assert installed["libssl3"].source == "openssl"
    assert installed["zlib1g"].source_version == ZLIB_INSTALLED
    assert "old-package" not in installed  # only config files left (rc)


def test_binnmu_and_missing_source() -> None:
    text = "ii \tlibfoo1\t1.2-3+b1\tfoo\t1.2-3\nii \tbar\t2.0-1\t\t\n"
    got = {p.name: p for p in parse_installed(text)}
    assert (got["libfoo1"].source, got["libfoo1"].source_version) == ("foo", "1.2-3")
    assert (got["bar"].source, got["bar"].source_version) == ("bar", "2.0-1")


def test_affects_uses_debian_order() -> None:
    v = Vulnerability("CVE-2023-45853", "zlib", ZLIB_FIXED)
    assert affects(v, ZLIB_INSTALLED)  # 1:1.2.13.dfsg-1 < 1:1.2.13.dfsg-1+deb12u1
    assert not affects(v, ZLIB_FIXED)
    assert not affects(v, "1:1.3-1")
    assert affects(Vulnerability("CVE-2026-1", "x", None), "9.9")  # no fix: all affected
    window = Vulnerability("CVE-2026-2", "x", "2.0-1", introduced="1.5-1")
    assert not affects(window, "1.0-1") and affects(window, "1.5-1")
    last = Vulnerability("CVE-2026-3", "x", None, last_affected="1.5-1")
    assert affects(last, "1.5-1") and not affects(last, "1.5-2")


def _catalog(**kw: object) -> Catalog:
    return Catalog(
        [
            Vulnerability("CVE-2026-84782", "openssl", OPENSSL_FIXED, "high", "tracker"),
            Vulnerability("CVE-2026-84782", "openssl", OPENSSL_FIXED_EARLIER, "medium", "osv"),
            Vulnerability("CVE-2026-7383", "openssl", OPENSSL_INSTALLED, "low", "tracker"),
            Vulnerability("CVE-2026-0002", "openssl", None, "unimportant", "tracker"),
            Vulnerability("CVE-2023-45853", "zlib", ZLIB_FIXED, "low", "tracker"),
        ],
        **kw,  # type: ignore[arg-type]
    )


def test_open_on_a_host_joins_binaries_and_sources() -> None:
    exposure = _catalog().open_on("web-blue-1", parse_installed(DPKG_QUERY_OUTPUT))
    by_cve = {c.cve: c for c in exposure.open}
    assert set(by_cve) == {"CVE-2026-84782", "CVE-2026-0002", "CVE-2023-45853"}
    ssl = by_cve["CVE-2026-84782"]
    assert ssl.packages == ["libssl3", "openssl"]
    assert ssl.installed == OPENSSL_INSTALLED
    assert ssl.fixed_version == OPENSSL_FIXED  # feeds disagree: the higher fix, the safe side
    assert ssl.urgency == "high"
    assert ssl.feeds == ["osv", "tracker"]
    assert ssl.fix_available is None  # no repository configured to tell
    assert by_cve["CVE-2026-0002"].fix_available is False  # no fix exists
    assert exposure.open[0].urgency == "high"  # most urgent first
    assert [c.cve for c in exposure.at_or_above("low")] == ["CVE-2026-84782", "CVE-2023-45853"]


def test_fix_available_from_the_repositories() -> None:
    installed = parse_installed(DPKG_QUERY_OUTPUT)
    catalog = _catalog(available={"openssl": OPENSSL_FIXED, "zlib": ZLIB_INSTALLED})
    by_cve = {c.cve: c for c in catalog.open_on("h", installed).open}
    assert by_cve["CVE-2026-84782"].fix_available is True
    assert by_cve["CVE-2026-84782"].available_version == OPENSSL_FIXED
    assert by_cve["CVE-2023-45853"].fix_available is False  # the repository lags behind


def test_patched_host_is_clean() -> None:
    patched = [
        Installed("libssl3", OPENSSL_FIXED, "openssl", OPENSSL_FIXED),
        Installed("zlib1g", ZLIB_FIXED, "zlib", ZLIB_FIXED),
    ]
    exposure = _catalog().open_on("web-green-1", patched)
    assert [c.cve for c in exposure.open] == ["CVE-2026-0002"]  # no fix exists for it
    assert exposure.at_or_above("low") == []


def test_summary() -> None:
    catalog = _catalog()
    hosts = [
        catalog.open_on("a", parse_installed(DPKG_QUERY_OUTPUT)),
        catalog.open_on("b", [Installed("libssl3", OPENSSL_FIXED, "openssl", OPENSSL_FIXED)]),
    ]
    s = summarize(hosts, "low")
    assert (s["hosts"], s["hosts_exposed"], s["cves"]) == (2, 1, 2)
    assert s["by_urgency"] == {"high": 1, "low": 1}
    assert summarize(hosts, "high")["cves"] == 1


def test_urgency_words() -> None:
    assert normalize_urgency("medium**") == "medium"
    assert normalize_urgency("not yet assigned") == "unknown"
    assert normalize_urgency("emergency") == "critical"
    assert normalize_urgency("negligible") == "unimportant"
    assert normalize_urgency(None) == "unknown"
    assert normalize_urgency("HIGH") == "high"
