"""The `bluegreen` click group: global options, the verbs of every group, the exit codes.

Every command is a thin function over the core: it parses arguments, calls one core
function, renders the typed result (text or `--json`) and maps typed errors to exit codes.
Heavy modules (ansible, pytest, rich) are imported inside the commands that need them, so
`bluegreen --help` and `bluegreen rollback` start fast.
"""

from __future__ import annotations

import click

from orchestrator.cli import audit, campaign, lab, probes, rollout, schedule, traffic
from orchestrator.cli.context import Ctx, witness_at_exit
from orchestrator.cli.exit import EXIT_CODES


@click.group(
    context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100},
    epilog=EXIT_CODES,
)
@click.option(
    "-c",
    "--config",
    "config",
    metavar="FILE",
    envvar="BLUEGREEN_CONFIG",
    help="bluegreen.yml to use (env BLUEGREEN_CONFIG; default ./bluegreen.yml).",
)
@click.option(
    "--actor", metavar="NAME", help="Who is acting, for the audit chain (default: OS user)."
)
@click.version_option(package_name="bluegreen")
@click.pass_context
def main(ctx: click.Context, config: str | None, actor: str | None) -> None:
    """Blue-green patch rollouts: patch the standby side, prove it healthy and secured,
    flip traffic to it at the load balancer, watch it, and keep the old side warm so that
    rollback is one instant flip.

    \b
    Start here:
      bluegreen lab up                 a local fleet to try it on (root)
      bluegreen -c /var/lib/bluegreen-lab/bluegreen.yml status
      bluegreen rollout web            patch web's standby, verify, flip, bake
      bluegreen rollback web --reason INC-4711
    """
    ctx.obj = Ctx(config, actor)
    ctx.call_on_close(lambda: witness_at_exit(ctx.obj))


for command in (
    lab.lab, traffic.rollback, traffic.flip, traffic.status, rollout.rollout, rollout.plan,
    rollout.resume, probes.verify, probes.drift, probes.baseline, audit.history, audit.audit,
    traffic.unlock, campaign.campaign, campaign.report_cmd, schedule.schedule,
):
    main.add_command(command)
