"""`bluegreen worker --site NAME`: serve the site's share of campaigns run by workers until
SIGTERM (or Ctrl-C)."""

from __future__ import annotations

import json
import signal
import threading
from typing import Any

import click

from orchestrator.cli.context import load, witness_step
from orchestrator.cli.exit import handles_errors
from orchestrator.text import one_line


@click.command("worker")
@click.option("--site", default="default", show_default=True, metavar="NAME",
              help="The site whose services this machine runs (`sites:` in bluegreen.yml).")
@click.option("--max-parallel", type=click.IntRange(1, 100), default=1, show_default=True,
              help="Services of the site this worker runs at the same time.")
@click.option("--json", "as_json", is_flag=True, help="One JSON event per line.")
@click.pass_context
@handles_errors
def worker(ctx: click.Context, site: str, max_parallel: int, as_json: bool) -> None:
    """Run campaigns' services of one site, handed out by `campaign run --workers` through
    the shared PostgreSQL store, until SIGTERM: claim, patch, verify, flip, bake, record.
    On SIGTERM no new service is claimed and the ones in flight end first."""
    from orchestrator.worker.loop import Worker

    config = load(ctx)
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
