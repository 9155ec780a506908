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


# -- DST (issue 20, 12): the opening is wall-clock time, the duration elapsed time ----------
# Europe/Berlin: 2026-10-25 03:00 CEST -> 02:00 CET (autumn, an hour twice);
#                2027-03-28 02:00 CET -> 03:00 CEST (spring, an hour missing).


def test_across_the_autumn_change_the_window_lasts_its_duration_and_shows_the_right_close() -> None:
    w = win(timezone="Europe/Berlin", start="0 1 * * 0", duration="4h")  # Sunday 01:00
    opens = datetime(2026, 10, 25, 1, 0, tzinfo=BERLIN)  # 01:00 CEST = 23:00 UTC
    st = window_state(w, opens + timedelta(minutes=1))
    assert st.open and st.closes_at is not None
    assert st.closes_at.astimezone(UTC) == datetime(2026, 10, 25, 3, 0, tzinfo=UTC)
    assert st.closes_at.isoformat() == "2026-10-25T04:00:00+01:00"  # shown: 04:00 CET
    length = st.closes_at.astimezone(UTC) - opens.astimezone(UTC)
    assert length == timedelta(hours=4)
    inside = datetime(2026, 10, 25, 2, 59, tzinfo=UTC)  # 03:59 CET: the fourth hour
    assert window_state(w, inside).open
    after = datetime(2026, 10, 25, 3, 1, tzinfo=UTC)  # 04:01 CET: four hours are over
    closed = window_state(w, after)
    assert not closed.open
    assert closed.next_open == datetime(2026, 11, 1, 1, 0, tzinfo=BERLIN)


def test_across_the_spring_change_the_window_is_not_an_hour_short() -> None:
    w = win(timezone="Europe/Berlin", start="0 1 * * 0", duration="4h")
    opens = datetime(2027, 3, 28, 1, 0, tzinfo=BERLIN)  # 01:00 CET = 00:00 UTC
    st = window_state(w, opens.astimezone(UTC) + timedelta(minutes=1))
    assert st.open and st.closes_at is not None
    assert st.closes_at.astimezone(UTC) == datetime(2027, 3, 28, 4, 0, tzinfo=UTC)
    assert st.closes_at.isoformat() == "2027-03-28T06:00:00+02:00"  # shown: 06:00 CEST
    assert window_state(w, datetime(2027, 3, 28, 3, 30, tzinfo=UTC)).open  # 05:30 CEST
    assert not window_state(w, datetime(2027, 3, 28, 4, 1, tzinfo=UTC)).open


def test_the_opening_stays_at_its_wall_clock_time_on_both_sides_of_a_change() -> None:
    w = win(timezone="Europe/Berlin", start="0 22 * * *", duration="1h")
    summer = window_state(w, datetime(2026, 10, 24, 19, 0, tzinfo=UTC))  # 21:00 CEST
    winter = window_state(w, datetime(2026, 10, 25, 19, 0, tzinfo=UTC))  # 20:00 CET
    assert summer.next_open is not None and winter.next_open is not None
    assert summer.next_open.isoformat() == "2026-10-24T22:00:00+02:00"
    assert winter.next_open.isoformat() == "2026-10-25T22:00:00+01:00"


def test_an_opening_in_the_spring_gap_and_in_the_autumn_fold() -> None:
    w = win(timezone="Europe/Berlin", start="30 2 * * *", duration="1h")
    # 02:30 does not exist on 2027-03-28: it opens at 03:30 CEST (01:30 UTC), for an hour
    gap = window_state(w, datetime(2027, 3, 28, 1, 0, tzinfo=UTC))
    assert not gap.open and gap.next_open is not None
    assert gap.next_open.astimezone(UTC) == datetime(2027, 3, 28, 1, 30, tzinfo=UTC)
    assert window_state(w, datetime(2027, 3, 28, 2, 29, tzinfo=UTC)).open
    assert not window_state(w, datetime(2027, 3, 28, 2, 31, tzinfo=UTC)).open
    # 02:30 happens twice on 2026-10-25: it opens once, at the first (00:30 UTC)
    fold = window_state(w, datetime(2026, 10, 25, 0, 0, tzinfo=UTC))
    assert fold.next_open is not None
    assert fold.next_open.astimezone(UTC) == datetime(2026, 10, 25, 0, 30, tzinfo=UTC)
    assert window_state(w, datetime(2026, 10, 25, 1, 29, tzinfo=UTC)).open
    assert not window_state(w, datetime(2026, 10, 25, 1, 31, tzinfo=UTC)).open  # 02:31 CET


def test_a_time_given_in_the_windows_own_zone_is_compared_as_an_instant() -> None:
    w = win(timezone="Europe/Berlin", start="0 1 * * 0", duration="4h")
    # 04:30 CET (03:30 UTC) on the autumn day, given as a Berlin time: closed (4 h over)
    assert not window_state(w, datetime(2026, 10, 25, 4, 30, tzinfo=BERLIN)).open
    # 02:30 CEST (fold=0, 00:30 UTC): open
    assert window_state(w, datetime(2026, 10, 25, 2, 30, tzinfo=BERLIN)).open
