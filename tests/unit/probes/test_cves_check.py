"""The `cves` check kind against a host that answers dpkg-query (a small fake) and a real
Security Tracker JSON file."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from orchestrator.advisories.settings import AdvisorySettings
from orchestrator.errors import BadInput
from orchestrator.probes import ProbeTarget, parse_checks
from tests.unit.advisories.feeds import DPKG_QUERY_OUTPUT, tracker_document, write_json


@dataclass
class _Out:
    rc: int
    stdout: str
    stderr: str = ""


class _Host:
    def __init__(self, output: str, rc: int = 0) -> None:
        self.output, self.rc = output, rc

    def run(self, command: str, *args: str) -> _Out:
        assert command.startswith("dpkg-query -W -f")
        return _Out(self.rc, self.output)


def _check(tmp_path: Path, item: dict[str, Any], feed: Path | None = None) -> Any:
    feed = feed or write_json(tmp_path / "tracker.json", tracker_document())
    (check,) = parse_checks([{"kind": "cves", **item}])
    settings = AdvisorySettings.model_validate(
        {"feeds": [{"kind": "debian-tracker", "url": str(feed)}]}
    )
    check.configure(SimpleNamespace(  # the two things the kind reads from a LoadedConfig
        model=SimpleNamespace(advisories=settings), advisories_cache_path=tmp_path / "cache"))
    return check


TARGET = ProbeTarget(name="web-green-1", address="10.0.0.1", known_hosts="/dev/null")


def test_fails_on_an_open_cve_at_the_threshold(tmp_path: Path) -> None:
    (result,) = _check(tmp_path, {"min_urgency": "high"}).run(_Host(DPKG_QUERY_OUTPUT), TARGET)
    assert result.status == "fail", result.evidence
    assert result.check == "cves:high"
    assert "CVE-2026-84782 high (openssl 3.0.20-1~deb12u2 < 3.0.22-1~deb12u2)" in result.evidence


def test_passes_below_the_threshold_and_with_ignore(tmp_path: Path) -> None:
    check = _check(tmp_path, {"min_urgency": "high", "ignore": ["CVE-2026-84782"]})
    (result,) = check.run(_Host(DPKG_QUERY_OUTPUT), TARGET)
    assert result.status == "pass", result.evidence
    (crit,) = _check(tmp_path, {"min_urgency": "critical"}).run(_Host(DPKG_QUERY_OUTPUT), TARGET)
    assert crit.status == "pass"


def test_fixable_only(tmp_path: Path) -> None:
    # the tracker alone cannot say whether the repositories offer the fix: nothing counts
    check = _check(tmp_path, {"min_urgency": "low", "fixable_only": True})
    (result,) = check.run(_Host(DPKG_QUERY_OUTPUT), TARGET)
    assert result.status == "pass"


def test_unreadable_host_and_bad_feed_are_errors(tmp_path: Path) -> None:
    (r1,) = _check(tmp_path, {}).run(_Host("", rc=1), TARGET)
    assert r1.status == "error"
    bad = tmp_path / "bad.json"
    bad.write_text('{"openssl": {"CVE-2026-84782": ')
    (r2,) = _check(tmp_path, {}, feed=bad).run(_Host(DPKG_QUERY_OUTPUT), TARGET)
    assert r2.status == "error" and "truncated" in r2.evidence


def test_bad_settings() -> None:
    with pytest.raises(BadInput, match="not CVE ids"):
        parse_checks([{"kind": "cves", "ignore": ["CVE-1"]}])
    with pytest.raises(BadInput, match="min_urgency"):
        parse_checks([{"kind": "cves", "min_urgency": "severe"}])
