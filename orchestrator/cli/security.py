"""Security verbs: watch the live side against its approved baseline, quarantine a side."""

from __future__ import annotations

import signal
import sys
from typing import Any

import click

from orchestrator.cli.context import actor, load, witness_step
from orchestrator.cli.exit import handles_errors
from orchestrator.cli.render import emit_json
from orchestrator.text import one_line, terminal


def render_round(result: Any, as_json: bool) -> None:
    """One round of `watch` / `baseline check`: JSON, or a line and the findings."""
    if as_json:
        emit_json(result.as_dict())
        return
    side = result.side or "both sides"
    when = result.at.strftime("%Y-%m-%d %H:%M:%S UTC")
    if not result.deviation:
        click.echo(f"{when} {result.service} {side}: matches {result.baseline} "
                   f"({len(result.report.hosts)} hosts)")
        return
    click.secho(f"{when} {result.service} {side}: DEVIATION from {result.baseline} "
                f"(audit #{result.audit_seq})", fg="red", bold=True)
    for host, words in result.findings.items():
        for word in words:
            click.echo(f"  {one_line(host)}: {one_line(word)}")
    if result.quarantine is not None:
        click.secho(f"  {one_line(result.quarantine.message)}", fg="yellow")
    if result.quarantine_error is not None:
        click.secho(f"  could not quarantine: {one_line(result.quarantine_error)}", fg="red")


@click.command("watch")
@click.argument("service")
@click.option("--interval", type=float, help="Seconds between checks (default: the service's "
              "watch.interval, 60).")
@click.option("--once", is_flag=True, help="One check, then exit (0 clean, 3 deviation).")
@click.option("--quarantine", "quarantine", is_flag=True,
              help="On a deviation of a kind in watch.quarantine_on, quarantine the live side "
              "(traffic moves to the other side only if it is verified).")
@click.option("--file", "path", help="Default: baselines/SERVICE.json next to the config.")
@click.option("--json", "as_json", is_flag=True, help="One JSON document per check.")
@click.pass_context
@handles_errors
def watch(ctx: click.Context, service: str, interval: float | None, once: bool,
          quarantine: bool, path: str | None, as_json: bool) -> None:
    """Compare the live side's hosts with the approved baseline (security fingerprint
    included), every --interval seconds until stopped; a deviation is reported by exit code
    3, an audit record, the webhook event `deviation` and /metrics."""
    from orchestrator.baseline.watch import check_round
    from orchestrator.baseline.watch import watch as watch_loop
    from orchestrator.errors import BadInput, VerificationFailed

    config = load(ctx, service)
    settings = config.service(service).watch
    every = settings.interval if interval is None else interval
    if not 1 <= every <= 86_400:
        raise BadInput(f"--interval {every:g}: out of range",
                       hint="give seconds between 1 and 86400")
    if quarantine and not settings.quarantine_on:
        raise BadInput(f"--quarantine: services.{service}.watch.quarantine_on names no kind "
                       "of deviation", hint="e.g. watch: {quarantine_on: [authorized-key, "
                       "setuid, listener, user, sudoers]} in the config")
    who = actor(ctx)
    if once:
        result = check_round(config, service, actor=who, path=path, quarantine=quarantine)
        render_round(result, as_json)
        if result.deviation:
            if as_json:
                sys.exit(VerificationFailed.exit_code)
            raise VerificationFailed(f"{service}: the live side deviates from its baseline")
        return
    stopped: list[int] = []
    signal.signal(signal.SIGTERM, lambda signum, _frame: stopped.append(signum))
    root = ctx.find_root().obj

    def on_round(result: Any) -> None:
        witness_step(root)  # a deviation's (and a quarantine's) records: witnessed now
        render_round(result, as_json)

    found = watch_loop(config, service, actor=who, interval=every, path=path,
                       quarantine=quarantine, on_round=on_round, stop=lambda: bool(stopped))
    if found:
        sys.exit(VerificationFailed.exit_code)


@click.command("quarantine")
@click.argument("service")
@click.option("--side", type=click.Choice(["blue", "green"]), required=True)
@click.option("--reason", required=True, help="Why (incident id); goes to the audit chain.")
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
@handles_errors
def quarantine(ctx: click.Context, service: str, side: str, reason: str, as_json: bool) -> None:
    """Take a side out of service: if it is live, flip to the other side first (only if that
    side is verified and its hosts are the verified ones), then mark it quarantined: never a
    flip target again until it is patched (rebuilt) and verified."""
    from orchestrator.rollout.tools import host_recheck
    from orchestrator.traffic import open_router, open_store, parse_side
    from orchestrator.traffic.quarantine import check_reason, quarantine_side

    config = load(ctx, service)
    config.service(service)
    check_reason(reason)
    target = parse_side(side)
    assert target is not None
    store, router = open_store(config), open_router(config)
    try:
        out = quarantine_side(store, router, service, target, reason, actor(ctx),
                              recheck_hosts=host_recheck(config, service))
    finally:
        router.close()
        store.close()
    if as_json:
        emit_json(out.as_dict())
    else:
        click.echo(terminal(out.message))


@click.command("rebuild")
@click.argument("service")
@click.option("--side", type=click.Choice(["blue", "green"]), required=True)
@click.option("--reason", required=True, help="Why (incident id); goes to the audit chain.")
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
@handles_errors
def rebuild(ctx: click.Context, service: str, side: str, reason: str, as_json: bool) -> None:
    """Rebuild a side that is not live instead of repairing it: run the service's
    patch.rebuild_playbook on it (re-image, redeploy), then the full verification gate; only
    a pass makes it verified again (how a quarantined side returns). Exit 3 when the gate
    fails."""
    from orchestrator.errors import VerificationFailed
    from orchestrator.rollout.context import new_run_id
    from orchestrator.rollout.rebuild import rebuild_playbook, rebuild_side
    from orchestrator.traffic import open_store, parse_side
    from orchestrator.traffic.quarantine import check_reason

    config = load(ctx, service)
    rebuild_playbook(config, service)  # bad input before anything opens
    check_reason(reason)
    target = parse_side(side)
    assert target is not None
    store = open_store(config)
    try:
        out = rebuild_side(config, store, service, target, actor=actor(ctx), reason=reason,
                           run_id="rebuild-" + new_run_id(service))
    finally:
        store.close()
    if as_json:
        emit_json(out.as_dict())
    else:
        from orchestrator.cli.render import render_results

        click.echo(f"{service} {target}: rebuilt with {out.playbook.name} in "
                   f"{out.playbook_seconds:.1f} s; {out.verify.summary}")
        render_results(out.verify.report.results, out.verify.report.hosts)
    if not out.ok:
        if as_json:
            sys.exit(VerificationFailed.exit_code)
        raise VerificationFailed(f"{service} {target}: rebuilt, but the verification failed")
