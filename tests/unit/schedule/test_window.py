"""Maintenance windows: cron + duration, intervals, freezes, timezones."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from orchestrator.schedule.window import CronSpec, Window, window_state

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
