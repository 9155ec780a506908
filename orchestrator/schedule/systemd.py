"""Starting campaigns at their window: systemd `.timer` + `.service` units (verified with
`systemd-analyze`), and the equivalent cron lines for hosts without systemd.

`install_schedule()` writes a timer that starts the campaign when its window opens, after
`systemd-analyze verify` passed on the units in a private directory (units systemd would
refuse are never written); `cron_lines()` says the same for cron. Paths and names with a
control character (a newline would start a new unit line or cron entry) are refused; `%`
and `$` are escaped for systemd (specifiers, variables) and `%` for cron (a newline there).
"""

from __future__ import annotations

import shlex
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from orchestrator.errors import BadInput, BluegreenError
from orchestrator.processes import run
from orchestrator.safe_write import write_file
from orchestrator.schedule.window import CronSpec, Window

SYSTEMD_DIR = Path("/etc/systemd/system")
UNIT_PREFIX = "bluegreen-campaign-"
_DOW_NAMES = ("Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat")


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
    refuse_controls(command, "a cron line")
    cmd = shlex.join(command).replace("%", "\\%")  # cron turns a bare % into a newline
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
    """The command a timer runs, with absolute paths; BadInput for a path with a control
    character (it would end the unit's line or the cron entry)."""
    for what, path in (("config file", config_path), ("campaign file", campaign_path)):
        refuse_controls([str(path.resolve())], f"the {what}'s path")
    return [
        *bluegreen_executable(),
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


def bluegreen_executable() -> list[str]:
    """How a unit starts this bluegreen: its own `bluegreen` script (absolute), else the
    one on PATH, else this Python with `-m orchestrator`."""
    exe = Path(sys.prefix) / "bin" / "bluegreen"
    found = str(exe) if exe.exists() else shutil.which("bluegreen")
    return [found] if found else [sys.executable, "-m", "orchestrator"]


@dataclass(frozen=True)
class InstalledUnits:
    name: str
    timer: Path
    service: Path
    on_calendar: list[str]
    command: list[str]
    cron: list[str]
    verified: bool | None = None
    """`systemd-analyze verify` on the written units: passed, failed, None = not run."""
    verify_output: str = ""

    def as_dict(self) -> dict[str, Any]:
        return {"timer": str(self.timer), "service": str(self.service),
                "on_calendar": self.on_calendar, "command": self.command, "cron": self.cron,
                "verified": self.verified, "verify_output": self.verify_output}

    def error(self) -> BluegreenError | None:
        """Units systemd refused are an error (exit 1); `install_schedule` writes none."""
        if self.verified is False:
            return BluegreenError("systemd-analyze verify failed on the written units",
                                  hint=self.verify_output[:500])
        return None


def _has_control(text: str) -> bool:
    return any(ord(c) < 0x20 or 0x7F <= ord(c) <= 0x9F for c in text)


def refuse_controls(values: list[str], what: str) -> None:
    for value in values:
        if _has_control(value):
            raise BadInput(
                f"{what} {value!r} contains a control character (newline, tab, escape...):"
                " it would change the systemd unit or cron line it is written into",
                hint="move or rename the file to a path without control characters",
            )


def systemd_quote(arg: str) -> str:
    # %: a unit specifier (%h, %n, ...); $: a variable; both doubled mean themselves
    arg = arg.replace("%", "%%")
    if arg and all(c.isalnum() or c in "/._-=:,@+%" for c in arg):
        return arg
    quoted = arg.replace("\\", "\\\\").replace('"', '\\"').replace("$", "$$")
    return '"' + quoted + '"'


def render_units(
    name: str, campaign_path: Path, window: Window, command: list[str]
) -> tuple[str, str]:
    refuse_controls([name, str(campaign_path.resolve()), *command], "a unit's text")
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
            "ExecStart=" + " ".join(systemd_quote(a) for a in command),
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
        # as root into /etc/systemd/system: never through a planted link (safe_write)
        write_file(path, text, mode=0o644)
    return InstalledUnits(
        name, timer, service, on_calendar(window), command, cron_lines(window, command)
    )


def install_schedule(
    name: str, campaign_path: Path, window: Window, config_path: Path, directory: Path | None
) -> InstalledUnits:
    """`systemd-analyze verify` the campaign's timer and service units in a private
    directory, then write them; units that fail verification are not written (raises
    BluegreenError, exit 1, with systemd's words)."""
    command = bluegreen_command(config_path, campaign_path)
    timer_text, service_text = render_units(name, campaign_path, window, command)
    with tempfile.TemporaryDirectory(prefix="bluegreen-units-") as tmp:
        trial = [Path(tmp) / f"{UNIT_PREFIX}{name}{suffix}" for suffix in (".service", ".timer")]
        for path, text in zip(trial, (service_text, timer_text), strict=True):
            write_file(path, text, mode=0o644)
        ok, output = verify_units(trial)
        output = output.replace(tmp + "/", "")
    if ok is False:
        raise BluegreenError(
            "systemd-analyze verify failed on the campaign's units: nothing was written",
            hint=output[:500] or "see `systemd-analyze verify` on the units")
    units = install_units(name, campaign_path, window, config_path, directory)
    return replace(units, verified=ok, verify_output=output)


def verify_units(paths: list[Path]) -> tuple[bool | None, str]:
    """`systemd-analyze verify` on the files: (ok, output); ok None if it is not installed."""
    tool = shutil.which("systemd-analyze")
    if tool is None:
        return None, "systemd-analyze not found"
    try:
        proc = run([tool, "verify", *map(str, paths)], timeout=60, merge_stderr=True)
    except subprocess.TimeoutExpired:
        return False, "systemd-analyze verify did not finish within 60 s"
    return proc.returncode == 0, proc.stdout.strip()


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
