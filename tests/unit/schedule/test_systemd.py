"""systemd timer/service units and cron lines for a campaign's window."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from orchestrator.safe_write import UnsafePath
from orchestrator.schedule.systemd import (
    cron_lines,
    install_units,
    list_units,
    on_calendar,
    remove_units,
)
from tests.unit.schedule.test_window import win


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


def test_units_are_never_written_through_a_planted_symlink(tmp_path: Path) -> None:
    """As root into /etc/systemd/system: a link planted at a unit's path (or at the old
    predictable temporary name) must not redirect the write."""
    units_dir, outside = tmp_path / "units", tmp_path / "etc"
    units_dir.mkdir()
    outside.mkdir()
    victim = outside / "shadow"
    victim.write_text("root:*:19000:0:99999:7:::\n")
    (units_dir / "bluegreen-campaign-c.service.tmp").symlink_to(victim)
    w = win(start="0 22 * * 6", duration="4h")
    units = install_units("c", tmp_path / "c.yml", w, tmp_path / "bluegreen.yml", units_dir)
    assert not units.service.is_symlink() and victim.read_text().startswith("root:*")
    (units_dir / "bluegreen-campaign-d.service").symlink_to(victim)
    with pytest.raises(UnsafePath, match="symbolic link"):
        install_units("d", tmp_path / "c.yml", w, tmp_path / "bluegreen.yml", units_dir)
    assert victim.read_text() == "root:*:19000:0:99999:7:::\n"
