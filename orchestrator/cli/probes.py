"""Probe verbs: verify (the gate, recorded), drift between the sides, and the approved
baseline (save, check)."""

from __future__ import annotations

import sys
from typing import Any

import click

from orchestrator.cli.context import actor, load
from orchestrator.cli.exit import handles_errors
from orchestrator.cli.render import emit_json, render_drift, render_results
from orchestrator.text import one_line


@click.command("verify")
@click.argument("service")
@click.option("--side", type=click.Choice(["blue", "green"]), help="Default: the standby side.")
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
@handles_errors
def verify(ctx: click.Context, service: str, side: str | None, as_json: bool) -> None:
    """Run the verification gate on a side: checks, suites and drift, a table host x check;
    exit 3 on any failure. The result is recorded for the side (the flip gate reads it)."""
    from orchestrator.errors import VerificationFailed
    from orchestrator.rollout.steps.verify import verify_side
    from orchestrator.traffic import open_store, side_or_default

    config = load(ctx, service)
    target = side_or_default(config, service, side, default="standby")
    store = open_store(config)
    # The service's run lock: no rollout patches the side while it is judged (LockHeld,
    # exit 5), and the verdict is recorded for the generation read at the start.
    from orchestrator.rollout.context import new_run_id

    lock_id = "verify-" + new_run_id(service)
    store.acquire_lock(service, lock_id)
    try:
        out = verify_side(config, store, service, target, actor=actor(ctx))
    finally:
        store.release_lock(service, lock_id)
    if as_json:
        emit_json(
            {
                "service": service,
                "side": target,
                "ok": out.ok,
                "summary": out.summary,
                "seconds": round(out.report.seconds, 3),
                "results": [
                    {"host": r.host, "check": r.check, "status": r.status, "evidence": r.evidence}
                    for r in out.report.results
                ],
                "drift": out.drift.as_dict() if out.drift is not None else None,
                "warnings": out.warnings,
            }
        )
    else:
        click.echo(f"{service} {target}: {one_line(out.summary)} in {out.report.seconds:.1f} s")
        render_results(out.report.results, out.report.hosts)
        for w in out.warnings:
            click.secho(f"  warning: {one_line(w)}", fg="yellow")
    if not out.ok:
        if as_json:
            sys.exit(VerificationFailed.exit_code)
        raise VerificationFailed(f"{service} {target}: verification failed")


def _finish_drift(report: Any, doc: dict[str, Any], title: str, failure: str,
                  as_json: bool) -> None:
    """Shared end of `drift` and `baseline check`: render (text or JSON), exit 3 on drift."""
    from orchestrator.errors import VerificationFailed

    if as_json:
        emit_json({**doc, **report.as_dict()})
    else:
        click.echo(f"{title}: {report.summary()}")
        render_drift(report)
    if not report.ok:
        if as_json:
            sys.exit(VerificationFailed.exit_code)
        raise VerificationFailed(failure)


@click.command("drift")
@click.argument("service")
@click.option("--side", type=click.Choice(["blue", "green"]), help="Default: the standby side.")
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
@handles_errors
def drift(ctx: click.Context, service: str, side: str | None, as_json: bool) -> None:
    """Compare SERVICE's sides: packages, enabled and running units, listening ports, file
    hashes, and the security fingerprint (authorized keys, users, sudoers, setuid files,
    cron, timers, listeners, sshd and PAM config). The standby may differ from the live side only in the patched packages; hosts
    within a side must match. Exit 3 on drift."""
    from orchestrator.rollout.steps.verify import side_drift
    from orchestrator.traffic import side_or_default

    config = load(ctx, service)
    target = side_or_default(config, service, side, default="standby")
    report = side_drift(config, service, target)
    _finish_drift(report, {"service": service, "side": target},
                  f"{service} {target} vs the other side",
                  f"{service}: drift between or within the sides", as_json)


@click.group("baseline")
def baseline() -> None:
    """An approved fingerprint of a service's hosts, kept next to the config."""


@baseline.command("save")
@click.argument("service")
@click.option("--side", type=click.Choice(["blue", "green"]), help="Default: the live side.")
@click.option("--file", "path", help="Default: baselines/SERVICE.json next to the config.")
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
@handles_errors
def baseline_save(
    ctx: click.Context, service: str, side: str | None, path: str | None, as_json: bool
) -> None:
    """Write what all hosts of a side agree on as the approved baseline (sorted JSON)."""
    from orchestrator.baseline.approved import save_baseline
    from orchestrator.traffic import side_or_default

    config = load(ctx, service)
    saved = save_baseline(config, service, side_or_default(config, service, side, default="live"),
                          path)
    if as_json:
        emit_json(saved.as_dict())
    else:
        click.echo(f"saved {service} {saved.side} baseline ({len(saved.hosts)} hosts) to "
                   f"{saved.path}: {saved.counts}")


@baseline.command("check")
@click.argument("service")
@click.option("--side", type=click.Choice(["blue", "green", "both"]),
              help="Default: the live side (as the router says).")
@click.option("--file", "path", help="Default: baselines/SERVICE.json next to the config.")
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
@handles_errors
def baseline_check(
    ctx: click.Context, service: str, side: str | None, path: str | None, as_json: bool
) -> None:
    """Compare the live side's hosts (or --side) against the approved baseline, security
    fingerprint included; exit 3 on any difference (also recorded in the audit chain and
    sent as the webhook event `deviation`, as `watch` does)."""
    from orchestrator.baseline.watch import check_round
    from orchestrator.traffic import parse_side

    config = load(ctx, service)
    result = check_round(config, service, actor=actor(ctx), path=path, by="baseline check",
                         side=None if side == "both" else parse_side(side) or "live")
    source = result.baseline
    _finish_drift(result.report, {"service": service, "side": result.side or "both",
                                  "baseline": str(source), "audit_seq": result.audit_seq},
                  f"{service} {result.side or 'both sides'} vs {source}",
                  f"{service}: hosts differ from the baseline {source}", as_json)


