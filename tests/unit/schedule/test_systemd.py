"""systemd timer/service units and cron lines for a campaign's window."""

from __future__ import annotations

import subprocess
from dataclasses import replace
from pathlib import Path

import pytest

from orchestrator.safe_write import UnsafePath
from orchestrator.schedule.systemd import (
    cron_lines,
    install_schedule,
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


def test_install_schedule_verifies_what_it_wrote_and_says_so(tmp_path: Path) -> None:
    campaign_file = tmp_path / "c.yml"
    campaign_file.write_text("name: c\n")
    w = win(timezone="Europe/Berlin", start="0 22 * * 6", duration="4h")
    units = install_schedule("c", campaign_file, w, tmp_path / "bluegreen.yml", tmp_path)
    assert units.verified is True and units.error() is None  # systemd-analyze is installed
    doc = units.as_dict()
    assert doc["timer"] == str(tmp_path / "bluegreen-campaign-c.timer")
    assert doc["verified"] is True and doc["on_calendar"] == on_calendar(w)
    refused = replace(units, verified=False, verify_output="bad OnCalendar")
    failed = refused.error()
    assert failed is not None and failed.exit_code == 1 and failed.hint == "bad OnCalendar"


def test_units_that_systemd_refuses_are_not_written(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Issue 21, item 13: verified before they are written, not after."""
    from orchestrator.errors import BluegreenError
    from orchestrator.schedule import systemd

    campaign_file = tmp_path / "c.yml"
    campaign_file.write_text("name: c\n")
    units_dir = tmp_path / "units"
    units_dir.mkdir()
    w = win(timezone="Europe/Berlin", start="0 22 * * 6", duration="4h")
    monkeypatch.setattr(systemd, "on_calendar", lambda window: ["Saturn *-*-* 22:00:00"])
    with pytest.raises(BluegreenError) as info:
        install_schedule("c", campaign_file, w, tmp_path / "bluegreen.yml", units_dir)
    assert info.value.exit_code == 1 and "nothing was written" in str(info.value)
    assert "Saturn" in (info.value.hint or ""), info.value.hint
    assert list(units_dir.iterdir()) == []


@pytest.mark.parametrize("bad", ["c\nExecStartPre=touch pwned.yml", "c\r.yml",
                                 "c\x1b[2J.yml", "c\x85.yml"])
def test_control_characters_in_paths_never_reach_units_or_cron(tmp_path: Path, bad: str) -> None:
    from orchestrator.errors import BadInput

    campaign_file = tmp_path / bad
    campaign_file.write_text("name: c\n")
    w = win(timezone="Europe/Berlin", start="0 22 * * 6", duration="4h")
    for config, campaign in ((tmp_path / "bluegreen.yml", campaign_file),
                             (campaign_file, tmp_path / "c.yml")):
        with pytest.raises(BadInput) as info:
            install_schedule("c", campaign, w, config, tmp_path)
        assert info.value.exit_code == 2 and "control character" in str(info.value)
    with pytest.raises(BadInput):
        cron_lines(w, ["/bin/bluegreen", "campaign", "run", str(campaign_file)])
    assert not list(tmp_path.glob("bluegreen-campaign-*"))


def test_percent_and_dollar_are_escaped(tmp_path: Path) -> None:
    campaign_file = tmp_path / "c-100%-$HOME.yml"
    campaign_file.write_text("name: c\n")
    w = win(timezone="Europe/Berlin", start="0 22 * * 6", duration="4h")
    units = install_schedule("c", campaign_file, w, tmp_path / "bluegreen.yml", tmp_path)
    assert units.verified is True
    exec_start = next(ln for ln in units.service.read_text().splitlines()
                      if ln.startswith("ExecStart="))
    assert f'"{tmp_path}/c-100%%-$$HOME.yml"' in exec_start, exec_start
    assert "c-100\\%-$HOME.yml" in units.cron[-1], units.cron
