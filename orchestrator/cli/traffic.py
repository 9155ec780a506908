"""Traffic verbs: rollback (the incident path: keep its imports lean), flip, status, unlock.
Each opens the store and the router and calls the kernel (orchestrator/traffic/)."""

from __future__ import annotations

import sys
from typing import Any

import click

from orchestrator.cli.context import actor, load, load_for_traffic
from orchestrator.cli.exit import handles_errors
from orchestrator.cli.render import emit_json
from orchestrator.text import one_line, terminal


def _move(ctx: click.Context, config: Any, service: str, to_side: str | None, reason: str, *,
          command: str, force: bool = False, recheck: bool = False) -> Any:
    """`rollback` and `flip` through the kernel; `flip` (unless forced) first checks that
    the side's hosts are still the ones that were verified (one SSH round trip)."""
    from orchestrator.traffic import operator_move

    recheck_hosts = None
    if recheck:
        from orchestrator.rollout.tools import host_recheck

        recheck_hosts = host_recheck(config, service)
    return operator_move(config, service, to_side, reason, actor(ctx), command=command,
                         force=force, recheck_hosts=recheck_hosts)


@click.command("rollback")
@click.argument("service")
@click.option("--reason", required=True, help="Why (incident id); goes to the audit chain.")
@click.option(
    "--to",
    "to_side",
    type=click.Choice(["blue", "green"]),
    help="Side to send traffic to (default: the side that was live before the last flip).",
)
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
@handles_errors
def rollback(
    ctx: click.Context, service: str, reason: str, to_side: str | None, as_json: bool
) -> None:
    """Send SERVICE's traffic back to the side that was live before its last flip, now.

    \b
    Idempotent: when that side is already live, nothing changes (a second operator's
    rollback says so). No Ansible, no probes, no SSH: the target must be verified or
    untouched since, and have a server UP at the load balancer; then flip, persist,
    record, audit. A rollout of SERVICE is aborted; if it had not flipped yet, traffic
    stays where it is. The side traffic leaves becomes failed_live.
    """
    out = _move(ctx, load_for_traffic(ctx, service), service, to_side, reason, command="rollback")
    if as_json:
        emit_json(out.as_dict())
    elif out.changed:
        click.echo(
            f"{service}: rolled back {out.from_side} -> {out.to_side} "
            f"in {out.seconds * 1000:.0f} ms"
        )
        if out.aborted_run:
            click.echo(f"  aborted run {out.aborted_run}")
    else:
        click.echo(terminal(out.message))
    for note in out.recovered:
        click.echo(f"  (first {note}: it had been interrupted)", err=True)


@click.command("flip")
@click.argument("service")
@click.option("--to", "to_side", type=click.Choice(["blue", "green"]), required=True)
@click.option("--reason", required=True, help="Why; goes to the audit chain.")
@click.option(
    "--force", is_flag=True,
    help="Flip even if the side may not take traffic (not verified at its level, patching, "
    "failed_live...); audited, with --reason.",
)
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
@handles_errors
def flip(
    ctx: click.Context, service: str, to_side: str, reason: str, force: bool, as_json: bool
) -> None:
    """Manually move SERVICE's traffic to a side: it must be verified at its current
    patch level (or be the side that was live before the last flip), its hosts must still
    be the ones that were verified (one SSH round trip), and router and state must agree.
    A rollout of SERVICE is aborted."""
    if force:
        click.secho(
            f"WARNING: --force: sending {service}'s traffic to {to_side} without the "
            f"verification gate; audited as forced ({reason})",
            fg="red", bold=True, err=True,
        )
    out = _move(ctx, load(ctx, service), service, to_side, reason, command="flip", force=force,
                recheck=not force)
    if as_json:
        emit_json(out.as_dict())
    else:
        click.echo(f"{service}: {out.from_side} -> {out.to_side}" if out.changed
                   else terminal(out.message))
        if out.aborted_run and out.changed:
            click.echo(f"  aborted run {out.aborted_run}")


@click.command("status")
@click.argument("service", required=False)
@click.option(
    "--adopt", is_flag=True, help="Accept the router's live side into the state store (audited)."
)
@click.option("--reason", help="Why (with --adopt).")
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
@handles_errors
def status(
    ctx: click.Context, service: str | None, adopt: bool, reason: str | None, as_json: bool
) -> None:
    """Live side (from the router), standby, patch level and verification of each side,
    and what the load balancer counted for each side since it started (responses, 5xx)."""
    from orchestrator.doctor.groups import side_group_problems
    from orchestrator.traffic import FleetStatus, fleet_status

    config = load(ctx, service)
    parts = [fleet_status(view, service, actor(ctx), adopt_reason=reason, adopt_live=adopt)
             for view in ([config] if service else config.views())]  # each site its router
    fleet = FleetStatus([r for part in parts for r in part.rows], one=service is not None)
    groups = side_group_problems(config, [r.service for r in fleet.rows])
    if as_json:
        docs = [{**r.as_dict(), "inventory": groups.get(r.service, {})} for r in fleet.rows]
        emit_json(docs[0] if fleet.one else docs)
        if not fleet.agrees:
            sys.exit(1)
        return
    rows = fleet.rows
    for r in rows:
        warn = (
            "" if r.agrees else f"  (STATE SAYS {r.state_live}: run `status {r.service} --adopt`)"
        )
        back = f"  rollback -> {r.rollback_to}" if r.rollback_to else "  (no rollback side yet)"
        if r.rollback_to and r.rollback_refused:
            back += f" (not eligible: {r.rollback_refused})"
        click.echo(f"{r.service}: live={r.live} standby={r.standby}{back}{warn}")
        for bad, problem in sorted(groups.get(r.service, {}).items()):
            click.secho(f"  INVENTORY ({bad}): {one_line(problem)}", fg="red")
        for side, info in r.sides.items():
            counted = info["traffic"]
            traffic = (f"  lb: {counted['responses']} responses, {counted['errors_5xx']} 5xx"
                       if counted else "")
            since = f" since {info['since'][:19].replace('T', ' ')}" if info["since"] else ""
            click.echo(f"  {side:<6} {info['state']:<13} patch={info['patch_level'] or '-'}"
                       f"{since}{traffic}")
            if info["reason"] and info["state"] not in ("untouched", "verified"):
                click.echo(f"         {one_line(info['reason'])}")
        if r.exposure:
            e = r.exposure
            share = ("preview only (X-Bluegreen-Preview: 1 or cookie bluegreen_preview=1)"
                     if e["preview"]
                     else f"{e['percent']} % of new requests")
            click.secho(f"  step: {share} -> {e['side']}, the rest -> {r.live}", fg="yellow")
        if r.exposure != r.state_exposure:
            rec = r.state_exposure
            said = f"{rec['percent']} % on {rec['side']}" if rec else "no exposure"
            why = f" ({one_line(r.exposure_error)})" if r.exposure_error else ""
            click.secho(f"  EXPOSURE: the store recorded {said}{why}; the next traffic "
                        "command reconciles it", fg="red")
        if r.flip_problem:
            click.secho(f"  FLIP PROBLEM: {one_line(r.flip_problem)}", fg="red")
        if r.pending_flip:
            p = r.pending_flip
            click.secho(f"  pending flip: {p['command']} {p['from_side']} -> {p['to_side']} "
                        f"since {p['at']} (the next traffic command completes or cancels it)",
                        fg="yellow")
        if r.run_in_flight:
            click.echo(
                f"  run in flight: {r.run_in_flight['run_id']} ({r.run_in_flight['status']})"
            )
        if r.last_abandoned:
            click.echo(f"  last abandoned run: {r.last_abandoned['run_id']} "
                       f"({r.last_abandoned['result']})")
    if not fleet.agrees:
        sys.exit(1)



@click.command("unlock")
@click.argument("service")
@click.option("--reason", required=True)
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
@handles_errors
def unlock(ctx: click.Context, service: str, reason: str, as_json: bool) -> None:
    """Free SERVICE's run lock when its holder is gone (audited). A holder that is not
    provably gone has its run marked aborted (it stops at its next step boundary); on
    PostgreSQL a hung holder's session is ended. A live holder on this machine keeps the
    lock until it stops (exit 5). The holder's later writes are refused (run epochs)."""
    from orchestrator.errors import LockHeld
    from orchestrator.traffic import open_store
    from orchestrator.traffic.unlock import unlock as unlock_service

    out = unlock_service(open_store(load(ctx)), service, reason, actor(ctx))
    if as_json:
        emit_json(out.as_dict())
    else:
        click.echo(out.message)
    if out.lock is not None and not out.released:
        sys.exit(LockHeld.exit_code)
