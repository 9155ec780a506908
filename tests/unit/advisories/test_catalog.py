from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from orchestrator.advisories.catalog import load_catalog, parse_feed_arg, policy_for
from orchestrator.advisories.settings import AdvisorySettings
from orchestrator.errors import BadInput
from tests.unit.advisories.feeds import (
    DEB_CHANGELOG,
    DPKG_QUERY_OUTPUT,
    OPENSSL_FIXED,
    SigningKey,
    build_deb,
    flat_repo,
    osv_record,
    tracker_document,
    write_json,
)


def test_feed_kinds_are_recognised(tmp_path: Path) -> None:
    policy = policy_for(AdvisorySettings(), tmp_path / "c", None)
    tracker = write_json(tmp_path / "t.json", tracker_document())
    osv = write_json(tmp_path / "o.json", osv_record("CVE-2026-84782", "openssl", OPENSSL_FIXED))
    assert parse_feed_arg(str(tracker), policy) == ("debian-tracker", str(tracker))
    assert parse_feed_arg(str(osv), policy) == ("osv", str(osv))
    assert parse_feed_arg("osv:" + str(tracker), policy) == ("osv", str(tracker))
    assert parse_feed_arg("http://10.231.0.1:8099/bookworm-security/", policy)[0] == "changelog"
    assert parse_feed_arg("https://x/debian bookworm main", policy)[0] == "changelog"
    assert parse_feed_arg("https://x/all.zip", policy)[0] == "osv"


def test_several_feeds_in_one_catalog(tmp_path: Path, signing_key: SigningKey) -> None:
    from orchestrator.advisories.exposure import parse_installed

    repo = tmp_path / "repo"
    repo.mkdir()
    build_deb(repo, "libssl3", OPENSSL_FIXED, "openssl", DEB_CHANGELOG)
    flat_repo(repo, signing_key)
    tracker = write_json(tmp_path / "t.json", tracker_document())
    settings = AdvisorySettings(repositories=[f"{repo} ./"], keyring=str(signing_key.keyring))
    catalog = load_catalog(settings, tmp_path / "c", feed_args=[str(tracker), f"{repo}/"])
    assert len(catalog.feeds) == 2
    exposure = catalog.open_on("h", parse_installed(DPKG_QUERY_OUTPUT))
    ssl = next(c for c in exposure.open if c.cve == "CVE-2026-84782")
    assert ssl.feeds == ["changelog", "debian-tracker"]
    assert ssl.fix_available is True and ssl.available_version == OPENSSL_FIXED
    zlib = next(c for c in exposure.open if c.source == "zlib")
    assert zlib.fix_available is False  # the configured repository has no zlib


def test_no_feed_at_all(tmp_path: Path) -> None:
    with pytest.raises(BadInput, match="no advisory feed"):
        load_catalog(AdvisorySettings(), tmp_path)


def test_settings_validation() -> None:
    with pytest.raises(ValidationError, match="needs `url:`"):
        AdvisorySettings.model_validate({"feeds": [{"kind": "osv"}]})
    with pytest.raises(ValidationError, match="needs `repositories:`"):
        AdvisorySettings.model_validate({"feeds": [{"kind": "changelog"}]})
    with pytest.raises(ValidationError, match="not an apt repository"):
        AdvisorySettings.model_validate({"repositories": ["bookworm main"]})
    with pytest.raises(ValidationError):
        AdvisorySettings.model_validate({"min_urgency": "severe"})
    s = AdvisorySettings.model_validate({"repositories": ["http://h/debian bookworm main"]})
    assert [f.kind for f in s.effective_feeds()] == ["changelog"]


def test_a_bad_feed_is_refused_before_any_repository_is_fetched(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Bad input changes nothing, not even the cache: the repositories' indexes (fetched
    and cached) are read only after the feeds that need none were read whole."""
    import orchestrator.advisories.catalog as catalog_module

    def fetched(*_: object, **__: object) -> None:
        raise AssertionError("the repository index was fetched before the feed was read")

    monkeypatch.setattr(catalog_module, "load_index", fetched)
    truncated = tmp_path / "t.json"
    truncated.write_text('{"openssl": {"CVE-2026-84782": {"releases": ')
    settings = AdvisorySettings(repositories=["http://10.231.0.1:8099/bookworm-security ./"])
    with pytest.raises(BadInput, match="truncated"):
        load_catalog(settings, tmp_path / "c", feed_args=[f"debian-tracker:{truncated}"])
    assert not (tmp_path / "c").exists()
