"""Maintenance windows: when flips may happen. A window is always open, or opens at a
cron-style start for a duration, or at explicit intervals; freeze dates (in the window's
timezone) close it whatever else says.

`window_state(window, now)` says whether flips may happen now, when the window closes and
when it opens next. The pydantic models of the `window:` section live here too, so the
campaign model imports windows, never the other way round.

Time base (one, on purpose): a cron window's opening is a wall-clock time in the window's
timezone (`0 1 * * 0` opens at 01:00 Europe/Berlin, summer or winter); its `duration` is
elapsed time (4h is four real hours, also across a DST change). All arithmetic and every
comparison is done on UTC instants: Python's arithmetic on a zone-aware datetime is
wall-clock arithmetic, and comparing two datetimes of the same zone compares wall clocks.
An opening that does not exist (in the spring gap, 02:30 when clocks jump from 02:00 to
03:00) happens at the same offset as before the change (03:30 summer time); one that exists
twice (in the autumn fold) happens once, at its first occurrence. Freeze dates and the
"close at midnight before a frozen day" rule use the local (wall-clock) date.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Annotated
from zoneinfo import ZoneInfo

from pydantic import AfterValidator, AwareDatetime, Field, model_validator

from orchestrator.config.types import Duration, StrictModel, TimeZone

SEARCH_DAYS = 400
_CRON_FIELD_RE = re.compile(r"^[0-9*,/-]+$")


# --------------------------------------------------------------------------- cron


@dataclass(frozen=True)
class CronSpec:
    """A five-field cron expression: MIN HOUR DOM MON DOW (DOW 0 or 7 = Sunday)."""

    text: str
    minutes: tuple[int, ...]
    hours: tuple[int, ...]
    doms: tuple[int, ...]
    months: tuple[int, ...]
    dows: tuple[int, ...]
    dom_any: bool
    dow_any: bool

    @classmethod
    def parse(cls, text: str) -> CronSpec:
        parts = text.split()
        if len(parts) != 5:
            raise ValueError(f"cron needs 5 fields (MIN HOUR DOM MON DOW), got {text!r}")
        names = ("minute", "hour", "day of month", "month", "day of week")
        ranges = ((0, 59), (0, 23), (1, 31), (1, 12), (0, 7))
        values = [
            _cron_field(p, lo, hi, n) for p, (lo, hi), n in zip(parts, ranges, names, strict=True)
        ]
        dows = tuple(sorted({0 if d == 7 else d for d in values[4]}))
        return cls(
            text=text,
            minutes=tuple(values[0]),
            hours=tuple(values[1]),
            doms=tuple(values[2]),
            months=tuple(values[3]),
            dows=dows,
            dom_any=parts[2] == "*",
            dow_any=parts[4] == "*",
        )

    def matches_day(self, day: date) -> bool:
        if day.month not in self.months:
            return False
        dom_ok = day.day in self.doms
        dow_ok = (day.weekday() + 1) % 7 in self.dows
        if not self.dom_any and not self.dow_any:
            return dom_ok or dow_ok  # cron: either restriction matches
        return dom_ok and dow_ok

    def starts(self, tz: ZoneInfo, after: datetime, until: datetime) -> Iterator[datetime]:
        """Openings in [after, until] (compared as instants), in order, as aware datetimes
        in `tz`: each a wall-clock time in `tz` (see the module docstring for the DST gap
        and fold)."""
        lo, hi = _utc(after), _utc(until)
        day = after.astimezone(tz).date()
        last = until.astimezone(tz).date()
        while day <= last:
            if self.matches_day(day):
                found = {
                    _utc(datetime(day.year, day.month, day.day, h, m, tzinfo=tz))
                    for h in self.hours for m in self.minutes
                }
                for at in sorted(found):
                    if lo <= at <= hi:
                        yield at.astimezone(tz)
            day += timedelta(days=1)


def _cron_field(text: str, lo: int, hi: int, name: str) -> list[int]:
    out: set[int] = set()
    for item in text.split(","):
        base, _, step_text = item.partition("/")
        step = int(step_text) if step_text.isdigit() else 1
        if step_text and not step_text.isdigit() or step < 1:
            raise ValueError(f"cron {name}: bad step in {item!r}")
        if base == "*":
            start, end = lo, hi
        elif "-" in base:
            a, _, b = base.partition("-")
            if not (a.isdigit() and b.isdigit()):
                raise ValueError(f"cron {name}: bad range {item!r}")
            start, end = int(a), int(b)
        elif base.isdigit():
            start = int(base)
            end = hi if step_text else start
        else:
            raise ValueError(f"cron {name}: bad value {item!r}")
        if not (lo <= start <= hi and lo <= end <= hi and start <= end):
            raise ValueError(f"cron {name}: {item!r} is outside {lo}-{hi}")
        out.update(range(start, end + 1, step))
    return sorted(out)



# --------------------------------------------------------------------------- models


def _check_cron(value: str) -> str:
    fields = value.split()
    if len(fields) != 5 or not all(_CRON_FIELD_RE.match(f) for f in fields):
        raise ValueError(
            f"start must be a cron expression 'MIN HOUR DOM MON DOW' (e.g. '0 22 * * 6'), "
            f"got {value!r}"
        )
    CronSpec.parse(value)  # raises ValueError naming the bad field
    return value


CronText = Annotated[str, AfterValidator(_check_cron)]


class Interval(StrictModel):
    start: AwareDatetime
    end: AwareDatetime

    @model_validator(mode="after")
    def _ordered(self) -> Interval:
        if self.end <= self.start:
            raise ValueError(f"interval ends ({self.end}) before it starts ({self.start})")
        return self


class FreezeRange(StrictModel):
    start: date
    end: date


class Window(StrictModel):
    """When flips may happen: always, a cron-style start + duration, or explicit intervals.
    Freeze dates (in `timezone`) close it whatever else says. `start` is a wall-clock time
    in `timezone`; `duration` is elapsed time (see the module docstring)."""

    timezone: TimeZone = "UTC"
    always: bool = False
    start: CronText | None = None
    duration: Duration | None = None
    intervals: list[Interval] = Field(default_factory=list, max_length=1000)
    freeze: list[date | FreezeRange] = Field(default_factory=list, max_length=1000)

    @model_validator(mode="after")
    def _one_kind(self) -> Window:
        kinds = [bool(self.always), self.start is not None, bool(self.intervals)]
        if sum(kinds) != 1:
            raise ValueError(
                "set exactly one of `always: true`, `start:` (cron) with `duration:`, or"
                " `intervals:` (a list of {start, end} with timezones)"
            )
        if (self.start is None) != (self.duration is None):
            raise ValueError("`start:` and `duration:` go together: set both")
        if self.duration is not None and not timedelta(minutes=1) <= self.duration <= timedelta(
            days=31
        ):
            raise ValueError("duration must be between 1m and 31d")
        return self


# --------------------------------------------------------------------------- windows


@dataclass(frozen=True)
class WindowState:
    open: bool
    reason: str
    closes_at: datetime | None
    next_open: datetime | None

    def as_dict(self) -> dict[str, object]:
        return {
            "open": self.open,
            "reason": self.reason,
            "closes_at": self.closes_at.isoformat() if self.closes_at else None,
            "next_open": self.next_open.isoformat() if self.next_open else None,
        }


def _utc(at: datetime) -> datetime:
    """The instant, in UTC: what arithmetic and comparisons here work on."""
    return at.astimezone(UTC)


def frozen(window: Window, day: date) -> bool:
    for item in window.freeze:
        if isinstance(item, date):
            if item == day:
                return True
        elif item.start <= day <= item.end:
            return True
    return False


def _open_span(window: Window, now: datetime) -> tuple[datetime, datetime | None] | None:
    """(start, end) of the span of the window that contains `now`, ignoring freezes. A
    cron span ends `duration` of elapsed time after its opening."""
    if window.always:
        return now, None
    if window.start is not None and window.duration is not None:
        tz = ZoneInfo(window.timezone)
        spec = CronSpec.parse(window.start)
        instant = _utc(now)
        best = None
        for s in spec.starts(tz, instant - window.duration, instant):
            end = _utc(s) + window.duration
            if end > instant:
                best = (s, end.astimezone(tz))  # latest start that still covers now
        return best
    for iv in window.intervals:
        if _utc(iv.start) <= _utc(now) < _utc(iv.end):
            return iv.start, iv.end
    return None


def window_state(window: Window, now: datetime) -> WindowState:
    """Is the window open at `now` (aware)? When does it close, when does it open next?"""
    tz = ZoneInfo(window.timezone)
    local_day = now.astimezone(tz).date()
    span = _open_span(window, now)
    if span is not None and not frozen(window, local_day):
        end = span[1]
        midnight = datetime.combine(local_day + timedelta(days=1), datetime.min.time(), tz)
        if frozen(window, local_day + timedelta(days=1)):
            end = midnight if end is None else min(end, midnight, key=_utc)
        return WindowState(True, "window open", end, now)
    reason = (
        f"freeze on {local_day.isoformat()}"
        if frozen(window, local_day)
        else "outside the maintenance window"
    )
    return WindowState(False, reason, None, next_open(window, now))


def next_open(window: Window, now: datetime) -> datetime | None:
    """The next moment (>= now) the window is open, or None within SEARCH_DAYS."""
    tz = ZoneInfo(window.timezone)
    horizon = now + timedelta(days=SEARCH_DAYS)
    candidates: Iterator[datetime]
    if window.always:
        day = now.astimezone(tz).date()
        candidates = (
            max(now, datetime.combine(day + timedelta(days=i), datetime.min.time(), tz),
                key=_utc)
            for i in range(SEARCH_DAYS)
        )
    elif window.start is not None:
        candidates = CronSpec.parse(window.start).starts(tz, now, horizon)
    else:
        candidates = iter(sorted((max(iv.start, now, key=_utc) for iv in window.intervals
                                  if _utc(iv.end) > _utc(now)), key=_utc))
    for at in candidates:
        if not frozen(window, at.astimezone(tz).date()) and _open_span(window, at) is not None:
            return at
    return None
