"""`bluegreen worker --site NAME`: serve the site's share of campaigns run by workers until
SIGTERM (or Ctrl-C)."""

from __future__ import annotations

import json
import signal
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from orchestrator.cli.context import load, witness_step
from orchestrator.cli.exit import handles_errors
from orchestrator.cli.render import emit_json
from orchestrator.errors import BadInput
from orchestrator.text import one_line

if TYPE_CHECKING:
    from orchestrator.config.loaded import LoadedConfig


@click.command("worker")
@click.option("--site", default="default", show_default=True, metavar="NAME",
              help="The site whose services this machine runs (`sites:` in bluegreen.yml).")
@click.option("--max-parallel", type=click.IntRange(1, 100), default=1, show_default=True,
              help="Services of the site this worker runs at the same time.")
@click.option("--json", "as_json", is_flag=True, help="One JSON event per line.")
@click.option("--install-unit", is_flag=True,
              help="Write the systemd unit bluegreen-worker@SITE.service that runs this "
              "worker (with this config and --max-parallel) instead of running it.")
@click.option("--dry-run", is_flag=True, help="With --install-unit: print the unit, write "
              "nothing.")
@click.option("--replace", is_flag=True, help="With --install-unit: overwrite a different "
              "unit of that name (never done without it).")
@click.option("--dir", "directory", type=click.Path(file_okay=False),
              help="With --install-unit: write the unit here instead of /etc/systemd/system.")
@click.pass_context
@handles_errors
def worker(ctx: click.Context, site: str, max_parallel: int, as_json: bool,
           install_unit: bool, dry_run: bool, replace: bool, directory: str | None) -> None:
    """Run campaigns' services of one site, handed out by `campaign run --workers` through
    the shared PostgreSQL store, until SIGTERM: claim, patch, verify, flip, bake, record.
    On SIGTERM no new service is claimed and the ones in flight end first."""
    config = load(ctx)
    if install_unit:
        _install_unit(config, site, max_parallel, as_json, dry_run=dry_run, replace=replace,
                      directory=directory)
        return
    if dry_run or replace or directory:
        raise BadInput("--dry-run, --replace and --dir go with --install-unit",
                       hint=f"bluegreen worker --site {site} --install-unit --dry-run")
    from orchestrator.worker.loop import Worker

    stop = threading.Event()
    root = ctx.find_root().obj

    def on_signal(_signum: int, _frame: Any) -> None:
        stop.set()

    def on_event(ev: Any) -> None:
        witness_step(root)  # the audit head, after the steps that appended records
        if as_json:
            click.echo(json.dumps({"event": ev.kind, "message": ev.message, **ev.data},
                                  default=str))
        elif ev.kind in ("claimed", "finished", "started", "stopped", "stopping", "warning"):
            click.secho(f"-- {one_line(ev.message)}", fg="green" if ev.kind != "warning"
                        else "yellow", err=True)
        else:
            click.echo(f"     {one_line(ev.message)}", err=True)

    engine = Worker(config, site, max_parallel=max_parallel, on_event=on_event, stop=stop)
    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        engine.run()
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _install_unit(config: LoadedConfig, site: str, max_parallel: int, as_json: bool, *,
                  dry_run: bool, replace: bool, directory: str | None) -> None:
    """`--install-unit`: the site must have services and the store must be the shared one
    (a worker of a SQLite store would be refused at its start), checked before writing."""
    from orchestrator.schedule.worker_unit import install_worker_unit
    from orchestrator.state.queue import check_shared

    config.for_site(site)  # BadInput: no such site, or none of its services here
    check_shared(config.state, what="bluegreen worker")
    unit = install_worker_unit(config.path, site, max_parallel,
                               Path(directory) if directory else None,
                               dry_run=dry_run, replace=replace)
    if as_json:
        emit_json(unit.as_dict())
        return
    if dry_run:
        click.echo(f"# {unit.path} (dry run: not written)")
        click.echo(unit.text, nl=False)
    else:
        click.echo(f"{'unchanged' if unit.unchanged else 'wrote'} {unit.path}")
    click.echo("systemd-analyze verify: " + ("ok" if unit.verified else "not run"
                                             if unit.verified is None else "FAILED"))
    click.echo(f"enable: {unit.enable}")
    click.echo(f"stop: systemctl stop {unit.path.name} (SIGTERM: the rollouts in flight end "
               "first, up to TimeoutStopSec)")
