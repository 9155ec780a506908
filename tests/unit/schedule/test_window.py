"""Maintenance windows (cron + duration, intervals, freezes, timezones) and systemd units."""

from __future__ import annotations

import subprocess
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from orchestrator.campaign_model import Window
from orchestrator.schedule import (
    CronSpec,
    cron_lines,
    install_units,
    list_units,
    on_calendar,
    remove_units,
    window_state,
)

BERLIN = ZoneInfo("Europe/Berlin")


def win(**kw: Any) -> Window:
    return Window.model_validate(kw)


def test_cron_parse_fields() -> None:
    spec = CronSpec.parse("*/15 22 1-3 * 6,7")
    assert spec.minutes == (0, 15, 30, 45)
    assert spec.hours == (22,) and spec.doms == (1, 2, 3) and spec.dows == (0, 6)
    with pytest.raises(ValueError, match="minute"):
        CronSpec.parse("61 * * * *")


def test_saturday_night_window_in_berlin_crosses_midnight() -> None:
    w = win(timezone="Europe/Berlin", start="0 22 * * 6", duration="4h")
    sat_2330 = datetime(2026, 11, 28, 23, 30, tzinfo=BERLIN)  # a Saturday
    st = window_state(w, sat_2330)
    assert st.open and st.closes_at == datetime(2026, 11, 29, 2, 0, tzinfo=BERLIN)
    sun_0130 = datetime(2026, 11, 29, 1, 30, tzinfo=BERLIN)
    assert window_state(w, sun_0130).open
    sun_0201 = datetime(2026, 11, 29, 2, 1, tzinfo=BERLIN)
    closed = window_state(w, sun_0201)
    assert not closed.open
    assert closed.next_open == datetime(2026, 12, 5, 22, 0, tzinfo=BERLIN)
    # the same instant in UTC is judged in Berlin time
    assert window_state(w, sat_2330.astimezone(UTC)).open


def test_freeze_closes_and_next_open_skips_it() -> None:
    w = win(timezone="Europe/Berlin", start="0 22 * * *", duration="1h", freeze=["2026-12-24"])
    st = window_state(w, datetime(2026, 12, 24, 22, 30, tzinfo=BERLIN))
    assert not st.open and "freeze" in st.reason
    assert st.next_open == datetime(2026, 12, 25, 22, 0, tzinfo=BERLIN)
    ranged = win(always=True, freeze=[{"start": "2026-12-28", "end": "2027-01-02"}])
    st = window_state(ranged, datetime(2026, 12, 30, 12, tzinfo=UTC))
    assert not st.open and st.next_open == datetime(2027, 1, 3, tzinfo=ZoneInfo("UTC"))


def test_explicit_intervals() -> None:
    now = datetime(2026, 11, 27, 12, tzinfo=UTC)
    w = win(
        intervals=[
            {
                "start": (now + timedelta(hours=1)).isoformat(),
                "end": (now + timedelta(hours=2)).isoformat(),
            }
        ]
    )
    st = window_state(w, now)
    assert not st.open and st.next_open == now + timedelta(hours=1)
    assert window_state(w, now + timedelta(minutes=90)).open
    assert window_state(w, now + timedelta(hours=3)).next_open is None


def test_on_calendar_and_cron_lines() -> None:
    w = win(timezone="Europe/Berlin", start="30 22 * * 6", duration="2h")
    assert on_calendar(w) == ["Sat *-*-* 22:30:00 Europe/Berlin"]
    both = win(start="0 3 1 * 1-5", duration="1h")
    # cron ORs day-of-month and day-of-week: two systemd expressions
    assert on_calendar(both) == [
        "*-*-01 03:00:00 UTC",
        "Mon,Tue,Wed,Thu,Fri *-*-* 03:00:00 UTC",
    ]
    assert cron_lines(w, ["/bin/bluegreen", "campaign", "run", "/x.yml"]) == [
        "CRON_TZ=Europe/Berlin",
        "30 22 * * 6 root /bin/bluegreen campaign run /x.yml",
    ]


def test_generated_units_pass_systemd_analyze_verify(tmp_path: Path) -> None:
    campaign_file = tmp_path / "c.yml"
    campaign_file.write_text("name: c\n")
    config = tmp_path / "bluegreen.yml"
    config.write_text("version: 1\n")
    w = win(timezone="Europe/Berlin", start="0 22 * * 6", duration="4h")
    units = install_units("c", campaign_file, w, config, tmp_path)
    service_text = units.service.read_text()
    assert f"-c {config}" in service_text and f"campaign run {campaign_file}" in service_text
    proc = subprocess.run(
        ["systemd-analyze", "verify", str(units.service), str(units.timer)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    for cal in on_calendar(w):
        out = subprocess.run(
            ["systemd-analyze", "calendar", cal], capture_output=True, text=True, check=False
        )
        assert out.returncode == 0 and "Next elapse" in out.stdout, out.stderr
    # the check can fail: a broken calendar is refused by systemd
    units.timer.write_text(units.timer.read_text().replace("OnCalendar=Sat", "OnCalendar=Saturn"))
    bad = subprocess.run(
        ["systemd-analyze", "verify", str(units.service), str(units.timer)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert bad.returncode != 0
    assert [u["name"] for u in list_units(tmp_path)] == ["c"]
    assert len(remove_units("c", tmp_path)) == 2 and list_units(tmp_path) == []
