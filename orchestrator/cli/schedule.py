"""Schedule verbs: campaign timers for systemd (or cron lines): install, list, remove."""

from __future__ import annotations

import click

from orchestrator.cli.context import load
from orchestrator.cli.exit import handles_errors
from orchestrator.cli.render import emit_json


@click.group("schedule")
def schedule() -> None:
    """Start campaigns at their maintenance window with systemd timers (or cron)."""


@schedule.command("install")
@click.argument("file", type=click.Path(dir_okay=False, exists=True))
@click.option("--dir", "directory", type=click.Path(file_okay=False),
              help="Write the units here instead of /etc/systemd/system.")
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
@handles_errors
def schedule_install(ctx: click.Context, file: str, directory: str | None, as_json: bool) -> None:
    """Write bluegreen-campaign-NAME.timer/.service (OnCalendar from the window) and print
    the equivalent cron lines; `systemd-analyze verify` is run on what was written."""
    from pathlib import Path

    from orchestrator.campaign.model import load_campaign
    from orchestrator.schedule.systemd import install_schedule

    config = load(ctx)
    camp = load_campaign(file)
    units = install_schedule(camp.name, Path(file), camp.window, config.path,
                             Path(directory) if directory else None)
    ok, output = units.verified, units.verify_output
    if as_json:
        emit_json(units.as_dict())
    else:
        click.echo(f"wrote {units.timer}\nwrote {units.service}")
        click.echo("OnCalendar: " + "; ".join(units.on_calendar))
        click.echo("systemd-analyze verify: " + ("ok" if ok else "not run" if ok is None else "FAILED"))
        if output and not ok:
            click.echo(output)
        click.echo("cron (hosts without systemd), e.g. /etc/cron.d/bluegreen-" + camp.name + ":")
        for line in units.cron:
            click.echo("  " + line)
        if directory is None:
            click.echo(f"enable: systemctl daemon-reload && systemctl enable --now {units.timer.name}")
    failed = units.error()
    if failed is not None:
        raise failed


@schedule.command("list")
@click.option("--dir", "directory", type=click.Path(file_okay=False))
@click.option("--json", "as_json", is_flag=True)
@handles_errors
def schedule_list(directory: str | None, as_json: bool) -> None:
    """Campaign timers written by `schedule install`."""
    from pathlib import Path

    from orchestrator.schedule.systemd import list_units

    rows = list_units(Path(directory) if directory else None)
    if as_json:
        emit_json(rows)
        return
    for r in rows:
        click.echo(f"{r['name']:<24} {r['on_calendar']}  {r['campaign_file']}")


@schedule.command("remove")
@click.argument("name")
@click.option("--dir", "directory", type=click.Path(file_okay=False))
@handles_errors
def schedule_remove(name: str, directory: str | None) -> None:
    """Delete a campaign's timer and service units."""
    from pathlib import Path

    from orchestrator.schedule.systemd import remove_units

    for path in remove_units(name, Path(directory) if directory else None):
        click.echo(f"removed {path}")
    if directory is None:
        click.echo("then: systemctl daemon-reload")


