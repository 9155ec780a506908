"""The exposure record the views read (`advisories.measured`): what `exposure` leaves, how
one side's new measurement merges, and every file it must refuse as a whole."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from orchestrator.advisories import measured
from orchestrator.advisories.measured import MeasurementUnreadable, SideMeasurement

AT = datetime(2026, 11, 7, 22, 0, tzinfo=UTC)


def side(service: str, name: str, at: datetime = AT, **by: int) -> SideMeasurement:
    return SideMeasurement(service, name, at, hosts=2, hosts_exposed=2 if by else 0,
                           hosts_unread=0, by_urgency=dict(by), fix_available=sum(by.values()),
                           feeds=["changelog: http://10.231.5.1/ bookworm-security"])


def test_missing_file_is_nothing_measured(tmp_path: Path) -> None:
    assert measured.load(tmp_path / "exposure.json") == {}


def test_round_trip_most_urgent_first_and_merge_per_side(tmp_path: Path) -> None:
    path = measured.path_in(tmp_path / "advisories")
    measured.save(path, [side("web", "blue", medium=26, high=48), side("web", "green", high=48)])
    assert path.stat().st_mode & 0o777 == 0o644
    got = measured.load(path)
    blue = got[("web", "blue")]
    assert list(blue.by_urgency) == ["high", "medium"]  # the file sorts keys: order restored
    assert blue.open == 74 and blue.open_at_or_above("high") == 48
    assert blue.measured_at == AT and blue.feeds[0].startswith("changelog")
    # a later measurement of one side replaces that side only
    later = AT + timedelta(hours=1)
    measured.save(path, [side("web", "green", at=later)])
    got = measured.load(path)
    assert got[("web", "green")].open == 0 and got[("web", "green")].measured_at == later
    assert got[("web", "blue")].open == 74


def _entry(**change: Any) -> dict[str, Any]:
    return {**side("web", "blue", high=1).as_json(), **change}


@pytest.mark.parametrize("text", [
    b'{"format": 1, "sides": [',                                    # truncated
    b"\xff\xfe not utf-8",
    b"[]",
    json.dumps({"format": 2, "sides": []}).encode(),               # another format
    json.dumps({"format": 1, "sides": {}}).encode(),
    json.dumps({"format": 1, "sides": [_entry(side="red")]}).encode(),
    json.dumps({"format": 1, "sides": [_entry(service="")]}).encode(),
    json.dumps({"format": 1, "sides": [_entry(hosts=True)]}).encode(),   # bool is no count
    json.dumps({"format": 1, "sides": [_entry(hosts=-1)]}).encode(),
    json.dumps({"format": 1, "sides": [_entry(hosts="2")]}).encode(),
    json.dumps({"format": 1, "sides": [_entry(by_urgency={"<b>x</b>": 1})]}).encode(),
    json.dumps({"format": 1, "sides": [_entry(by_urgency={"high": 1.5})]}).encode(),
    json.dumps({"format": 1, "sides": [_entry(measured_at="2026-11-07T22:00:00")]}).encode(),
    json.dumps({"format": 1, "sides": [_entry(measured_at="yesterday")]}).encode(),
    json.dumps({"format": 1, "sides": [_entry(feeds=[1])]}).encode(),
    json.dumps({"format": 1, "sides": ["web"]}).encode(),
])
def test_a_file_not_written_by_save_is_refused_whole(tmp_path: Path, text: bytes) -> None:
    path = tmp_path / "exposure.json"
    path.write_bytes(text)
    with pytest.raises(MeasurementUnreadable) as refused:
        measured.load(path)
    assert str(path) in refused.value.message and "bluegreen exposure" in str(refused.value.hint)


def test_too_large_is_refused_and_save_replaces_an_unreadable_file(tmp_path: Path) -> None:
    path = tmp_path / "exposure.json"
    path.write_bytes(b" " * (measured.MAX_BYTES + 1))
    with pytest.raises(MeasurementUnreadable, match="larger than"):
        measured.load(path)
    measured.save(path, [side("api", "green", critical=1)])
    assert measured.load(path)[("api", "green")].by_urgency == {"critical": 1}


def test_what_exposure_leaves_counts_every_urgency_whatever_the_threshold(
        tmp_path: Path) -> None:
    from orchestrator.advisories.exposure import HostExposure
    from orchestrator.probes.exposure import SideExposure
    from tests.unit.campaign.test_new import _found

    found = _found(threshold="high")
    found.sides.append(SideExposure("db", "blue", [HostExposure("db-blue-1", error="refused")]))
    got = {(m.service, m.side): m for m in found.measurements(AT)}
    web = got[("web", "blue")]
    # high: 84782, 35189, 0002; medium: 42767; low: zlib 45853 (below the threshold shown)
    assert web.by_urgency == {"high": 3, "medium": 1, "low": 1}
    assert web.hosts == 1 and web.hosts_exposed == 1 and web.measured_at == AT
    assert web.feeds == found.catalog.feeds
    db = got[("db", "blue")]
    assert db.open == 0 and db.hosts_unread == 1 and db.hosts_exposed == 0
    path = tmp_path / "exposure.json"
    measured.save(path, got.values())
    assert measured.load(path) == got
