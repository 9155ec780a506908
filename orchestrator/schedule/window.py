"""Maintenance windows (cron-style start + duration, explicit intervals, freeze dates, all
timezone-aware) and their systemd timer / cron integration.

`window_state(window, now)` says whether flips may happen now, when the window closes and
when it opens next. `install_units()` writes a `.timer` + `.service` pair that starts the
campaign when its window opens; `cron_lines()` says the same for hosts without systemd.
"""

from __future__ import annotations

import shlex
import shutil
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING
from zoneinfo import ZoneInfo

from orchestrator.errors import BadInput

if TYPE_CHECKING:  # campaign_model imports this module lazily
    from orchestrator.campaign_model import Window

SYSTEMD_DIR = Path("/etc/systemd/system")
UNIT_PREFIX = "bluegreen-campaign-"
SEARCH_DAYS = 400
_DOW_NAMES = ("Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat")


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
        """Start times in [after, until], in order, as aware datetimes in `tz`."""
        day = after.astimezone(tz).date()
        last = until.astimezone(tz).date()
        while day <= last:
            if self.matches_day(day):
                for h in self.hours:
                    for m in self.minutes:
                        at = datetime(day.year, day.month, day.day, h, m, tzinfo=tz)
                        if after <= at <= until:
                            yield at
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


def frozen(window: Window, day: date) -> bool:
    for item in window.freeze:
        if isinstance(item, date):
            if item == day:
                return True
        elif item.start <= day <= item.end:
            return True
    return False


def _open_span(window: Window, now: datetime) -> tuple[datetime, datetime | None] | None:
    """(start, end) of the span of the window that contains `now`, ignoring freezes."""
    if window.always:
        return now, None
    if window.start is not None and window.duration is not None:
        tz = ZoneInfo(window.timezone)
        spec = CronSpec.parse(window.start)
        best = None
        for s in spec.starts(tz, now - window.duration, now):
            if s + window.duration > now:
                best = (s, s + window.duration)  # latest start that still covers now
        return best
    for iv in window.intervals:
        if iv.start <= now < iv.end:
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
            end = midnight if end is None else min(end, midnight)
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
            max(now, datetime.combine(day + timedelta(days=i), datetime.min.time(), tz))
            for i in range(SEARCH_DAYS)
        )
    elif window.start is not None:
        candidates = CronSpec.parse(window.start).starts(tz, now, horizon)
    else:
        candidates = iter(sorted(max(iv.start, now) for iv in window.intervals if iv.end > now))
    for at in candidates:
        if not frozen(window, at.astimezone(tz).date()) and _open_span(window, at) is not None:
            return at
    return None


# --------------------------------------------------------------------------- systemd / cron


def on_calendar(window: Window) -> list[str]:
    """systemd OnCalendar= values for the window's starts."""
    if window.always:
        raise BadInput(
            "an always-open window has no start time to schedule",
            hint="give the campaign a `window.start` (cron) + `duration`, or `intervals`",
        )
    if window.start is None:
        return [
            iv.start.astimezone(ZoneInfo("UTC")).strftime("%Y-%m-%d %H:%M:%S UTC")
            for iv in window.intervals
        ]
    spec = CronSpec.parse(window.start)
    fields = window.start.split()

    def values(idx: int, nums: tuple[int, ...], width: int) -> str:
        return "*" if fields[idx] == "*" else ",".join(f"{n:0{width}d}" for n in nums)

    time_part = f"{values(1, spec.hours, 2)}:{values(0, spec.minutes, 2)}:00"
    month, dom = values(3, spec.months, 2), values(2, spec.doms, 2)
    dows = ",".join(_DOW_NAMES[d] for d in spec.dows)
    tz = window.timezone
    if spec.dom_any and spec.dow_any:
        return [f"*-{month}-* {time_part} {tz}"]
    if spec.dom_any:
        return [f"{dows} *-{month}-* {time_part} {tz}"]
    if spec.dow_any:
        return [f"*-{month}-{dom} {time_part} {tz}"]
    # cron ORs day-of-month and day-of-week; systemd ANDs them: one line each
    return [f"*-{month}-{dom} {time_part} {tz}", f"{dows} *-{month}-* {time_part} {tz}"]


def cron_lines(window: Window, command: list[str]) -> list[str]:
    cmd = shlex.join(command)
    if window.always:
        return []
    if window.start is not None:
        return [f"CRON_TZ={window.timezone}", f"{window.start} root {cmd}"]
    out = ["CRON_TZ=UTC"]
    for iv in window.intervals:
        s = iv.start.astimezone(ZoneInfo("UTC"))
        out.append(f"{s.minute} {s.hour} {s.day} {s.month} * root {cmd}")
    return out


def bluegreen_command(config_path: Path, campaign_path: Path) -> list[str]:
    """The command a timer runs, with absolute paths."""
    exe = Path(sys.prefix) / "bin" / "bluegreen"
    found = str(exe) if exe.exists() else shutil.which("bluegreen")
    head = [found] if found else [sys.executable, "-m", "orchestrator"]
    return [
        *head,
        "-c",
        str(config_path.resolve()),
        "--actor",
        "schedule",
        "campaign",
        "run",
        str(campaign_path.resolve()),
        "--yes",
        "--continue",
    ]


@dataclass(frozen=True)
class InstalledUnits:
    name: str
    timer: Path
    service: Path
    on_calendar: list[str]
    command: list[str]
    cron: list[str]


def _systemd_quote(arg: str) -> str:
    if arg and all(c.isalnum() or c in "/._-=:,@+" for c in arg):
        return arg
    return '"' + arg.replace("\\", "\\\\").replace('"', '\\"') + '"'


def render_units(
    name: str, campaign_path: Path, window: Window, command: list[str]
) -> tuple[str, str]:
    calendars = on_calendar(window)
    unit = f"{UNIT_PREFIX}{name}"
    marker = f"# bluegreen campaign: {name} file: {campaign_path.resolve()}"
    timer = "\n".join(
        [
            marker,
            "[Unit]",
            f"Description=bluegreen campaign {name}: start at its maintenance window",
            "",
            "[Timer]",
            *(f"OnCalendar={c}" for c in calendars),
            f"Unit={unit}.service",
            "Persistent=false",
            "",
            "[Install]",
            "WantedBy=timers.target",
            "",
        ]
    )
    service = "\n".join(
        [
            marker,
            "[Unit]",
            f"Description=bluegreen campaign {name}",
            "After=network-online.target",
            "Wants=network-online.target",
            "",
            "[Service]",
            "Type=oneshot",
            "ExecStart=" + " ".join(_systemd_quote(a) for a in command),
            # 6 = window closed / deferred: expected, not a unit failure
            "SuccessExitStatus=6",
            "",
        ]
    )
    return timer, service


def install_units(
    name: str, campaign_path: Path, window: Window, config_path: Path, directory: Path | None
) -> InstalledUnits:
    target = directory or SYSTEMD_DIR
    if not target.is_dir():
        raise BadInput(f"{target}: no such directory", hint="create it or pass another --dir")
    command = bluegreen_command(config_path, campaign_path)
    timer_text, service_text = render_units(name, campaign_path, window, command)
    timer = target / f"{UNIT_PREFIX}{name}.timer"
    service = target / f"{UNIT_PREFIX}{name}.service"
    for path, text in ((service, service_text), (timer, timer_text)):
        tmp = path.with_suffix(path.suffix + ".tmp")
        tmp.write_text(text, encoding="utf-8")
        tmp.chmod(0o644)
        tmp.replace(path)
    return InstalledUnits(
        name, timer, service, on_calendar(window), command, cron_lines(window, command)
    )


def verify_units(paths: list[Path]) -> tuple[bool | None, str]:
    """`systemd-analyze verify` on the files: (ok, output); ok None if it is not installed."""
    tool = shutil.which("systemd-analyze")
    if tool is None:
        return None, "systemd-analyze not found"
    proc = subprocess.run(
        [tool, "verify", *map(str, paths)], capture_output=True, text=True, timeout=60, check=False
    )
    return proc.returncode == 0, (proc.stdout + proc.stderr).strip()


def list_units(directory: Path | None) -> list[dict[str, str]]:
    target = directory or SYSTEMD_DIR
    out = []
    for timer in sorted(target.glob(f"{UNIT_PREFIX}*.timer")):
        text = timer.read_text(encoding="utf-8", errors="replace")
        first = text.splitlines()[0] if text else ""
        campaign_file = first.partition(" file: ")[2]
        calendars = [
            ln.split("=", 1)[1] for ln in text.splitlines() if ln.startswith("OnCalendar=")
        ]
        out.append(
            {
                "name": timer.stem[len(UNIT_PREFIX) :],
                "timer": str(timer),
                "campaign_file": campaign_file,
                "on_calendar": "; ".join(calendars),
            }
        )
    return out


def remove_units(name: str, directory: Path | None) -> list[Path]:
    target = directory or SYSTEMD_DIR
    removed = []
    for suffix in (".timer", ".service"):
        path = target / f"{UNIT_PREFIX}{name}{suffix}"
        if path.exists():
            path.unlink()
            removed.append(path)
    if not removed:
        raise BadInput(
            f"no scheduled campaign {name!r} in {target}", hint="see `bluegreen schedule list`"
        )
    return removed
