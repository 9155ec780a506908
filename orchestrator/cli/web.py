"""What people look at: `serve` (read-only dashboard, JSON API, /metrics) and `metrics`
(the same metrics read once, for node_exporter's textfile collector)."""

from __future__ import annotations

import click

from orchestrator.cli.context import load
from orchestrator.cli.exit import handles_errors


@click.command("serve")
@click.option("--listen", default="127.0.0.1:8088", show_default=True, metavar="HOST:PORT",
              help="Address to serve on; anything but loopback needs a token.")
@click.option("--token-file", type=click.Path(dir_okay=False),
              help="File (mode 0600) holding the token; or set BLUEGREEN_SERVE_TOKEN.")
@click.option("--interval", type=click.FloatRange(0.5, 60), default=2.0, show_default=True,
              help="Seconds between two reads of the state store and the router.")
@click.option("--allowed-host", "allowed", multiple=True, metavar="NAME",
              help="A further name (or address) browsers reach the dashboard by; requests "
                   "naming any other Host than these, the listen address and localhost get "
                   "421. Repeatable.")
@click.pass_context
@handles_errors
def serve_cmd(ctx: click.Context, listen: str, token_file: str | None, interval: float,
              allowed: tuple[str, ...]) -> None:
    """A read-only dashboard, JSON API (/api/v1/...) and /metrics; changes nothing."""
    from orchestrator.web.server import (
        parse_allowed_host,
        parse_listen,
        resolve_token,
        run_server,
    )

    where = parse_listen(listen)
    token = resolve_token(where, token_file)
    hosts = [parse_allowed_host(h) for h in allowed]
    run_server(load(ctx), where, token, interval, click.echo, hosts)


@click.command("metrics")
@click.option("--textfile", type=click.Path(dir_okay=False),
              help="Write here (for node_exporter's textfile collector, *.prom); "
                   "default: print.")
@click.pass_context
@handles_errors
def metrics_cmd(ctx: click.Context, textfile: str | None) -> None:
    """The /metrics of `serve`, read once: live side, flips, rollbacks, verifications,
    campaigns, audit chain."""
    from orchestrator.web.server import metrics_text

    text = metrics_text(load(ctx))
    if textfile is None:
        click.echo(text.decode(), nl=False)
        return
    from pathlib import Path

    from orchestrator.safe_write import write_file

    click.echo(str(write_file(Path(textfile), text, mode=0o644)))
