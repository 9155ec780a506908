"""Rollout verbs: rollout, plan, resume (a killed run continues from its journal)."""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any

import click

from orchestrator.cli.context import actor, load
from orchestrator.cli.exit import handles_errors
from orchestrator.cli.render import RolloutProgress, emit_json
from orchestrator.errors import BadInput
from orchestrator.text import one_line, terminal


@click.command("rollout")
@click.argument("service")
@click.option(
    "--package",
    "packages",
    multiple=True,
    metavar="NAME[=VERSION]",
    help="Package to install on the standby (repeatable); default: the config's list.",
)
@click.option("--reason", help="Why (change ticket); goes to the audit chain.")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON (no progress).")
@click.pass_context
@handles_errors
def rollout(
    ctx: click.Context,
    service: str,
    packages: tuple[str, ...],
    reason: str | None,
    yes: bool,
    as_json: bool,
) -> None:
    """Patch SERVICE's standby side, verify it, flip traffic to it, bake, done.

    The live side is never touched; on failure during bake traffic goes back by itself.
    """
    from orchestrator.config.loaded import parse_package_arg

    config = load(ctx, service)
    config.service(service)
    specs = [parse_package_arg(p) for p in packages]
    if not yes:
        if not sys.stdin.isatty():
            raise BadInput("rollout needs confirmation", hint="pass --yes for non-interactive runs")
        what = ", ".join(packages) or "the configured packages"
        click.confirm(f"Patch {service}'s standby with {what} and flip to it?", abort=True)
    _run_rollout(ctx, config, as_json, lambda r: r.start(service, specs, reason=reason))


@click.command("plan")
@click.argument("service")
@click.option("--package", "packages", multiple=True, metavar="NAME[=VERSION]",
              help="Package to plan for (repeatable); default: the config's list.")
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
@handles_errors
def plan(ctx: click.Context, service: str, packages: tuple[str, ...], as_json: bool) -> None:
    """What `rollout SERVICE` would do: hosts, package changes (Ansible check mode) and
    router commands. Changes nothing."""
    from orchestrator.config.loaded import parse_package_arg
    from orchestrator.rollout.plan import plan_rollout
    from orchestrator.traffic import open_router

    config = load(ctx, service)
    config.service(service)
    specs = [parse_package_arg(p) for p in packages]
    router = open_router(config)
    try:
        out = plan_rollout(config, router, service, specs)
    finally:
        router.close()
    if as_json:
        emit_json(out.as_dict())
    else:
        click.echo(f"{service}: live={out.live}; would patch {out.standby} with "
                   f"{', '.join(out.packages)}")
        for host, info in out.hosts.items():
            changes = ", ".join(f"{n} {c['from'] or '-'} -> {c['to']}"
                                for n, c in info["changes"].items()) or "no package change"
            state = "" if info["ok"] else f"  PROBLEM: {one_line(info['message'])}"
            click.echo(f"  {host:<16} {one_line(changes)}{state}")
        click.echo("  router: " + "; ".join(out.router_commands))
        for problem in out.router_problems:
            click.secho(f"  FAILS: {problem.name}: {problem.detail}", fg="red")
            click.echo(f"    fix: {problem.fix}")
    if not out.ok:
        sys.exit(1)


@click.command("resume")
@click.argument("run_id", required=False)
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
@handles_errors
def resume(ctx: click.Context, run_id: str | None, as_json: bool) -> None:
    """Continue a run that was interrupted (even by kill -9) from its last finished step."""
    from orchestrator.campaign.runs import rollout_to_resume
    from orchestrator.traffic import open_store

    config = load(ctx)
    run = rollout_to_resume(open_store(config), run_id)
    if run is None:
        click.echo("nothing to resume")
        return
    _run_rollout(ctx, config.for_service(run.service), as_json, lambda r: r.resume(run))


def _run_rollout(ctx: click.Context, config: Any, as_json: bool, go: Callable[[Any], Any]) -> None:
    from orchestrator.errors import BluegreenError as BGE
    from orchestrator.rollout.runner import Rollout
    from orchestrator.traffic import open_router, open_store

    store, router = open_store(config), open_router(config)

    show = RolloutProgress(quiet=as_json)
    engine = Rollout(config, store, router, actor=actor(ctx), on_event=show)
    try:
        result = go(engine)
    except BGE as exc:
        if as_json:
            emit_json(
                {
                    "status": "failed",
                    "error": exc.message,
                    "fix": exc.hint,
                    "exit_code": exc.exit_code,
                }
            )
            sys.exit(exc.exit_code)
        raise
    finally:
        router.close()
    if as_json:
        emit_json(result.as_dict())
    else:
        click.echo(terminal(result.message))


