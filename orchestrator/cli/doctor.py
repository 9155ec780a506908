"""`bluegreen doctor`: the checks of `orchestrator.doctor`, as a table or JSON."""

from __future__ import annotations

import sys

import click

from orchestrator.cli.context import load
from orchestrator.cli.exit import handles_errors
from orchestrator.cli.render import emit_json

_MARK = {True: ("pass", "green"), False: ("FAIL", "red"), None: ("?", "yellow")}


@click.command("doctor")
@click.argument("service", required=False)
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
@handles_errors
def doctor(ctx: click.Context, service: str | None, as_json: bool) -> None:
    """Check everything a first rollout depends on (SSH to every host as the probes and
    Ansible connect, sudo, root, the load balancer's socket level, map, backends, server
    state and confirm header, health URLs, audit witness, state store), each with one fix
    line; exit 1 when a check fails. Changes nothing.

    \b
    SERVICE: only that service's hosts and routing (default: every service).
    A check shown `?` could not be told from here (e.g. haproxy.cfg of a load balancer
    whose files are not readable); it is not a failure.
    """
    from orchestrator.doctor.run import diagnose
    from orchestrator.text import one_line

    config = load(ctx, service)
    report = diagnose(config, [service] if service else None)
    if as_json:
        emit_json(report.as_dict())
    else:
        width = max(len(c.name) for c in report.checks)
        for check in report.checks:
            word, colour = _MARK[check.ok]
            click.echo(f"  {click.style(f'{word:<4}', fg=colour)}  {check.name:<{width}}  "
                       f"{one_line(check.detail)}")
            if check.ok is not True and check.fix:
                click.echo(f"        {'':<{width}}  fix: {one_line(check.fix)}")
        failed, unknown = len(report.failures), sum(1 for c in report.checks if c.ok is None)
        summary = (f"{len(report.checks)} checks: {failed} failed, {unknown} unknown"
                   if failed or unknown else f"all {len(report.checks)} checks passed")
        click.secho(summary, fg="red" if failed else "green", err=True)
    if not report.ok:
        sys.exit(1)
