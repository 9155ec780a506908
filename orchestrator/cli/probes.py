"""Probe verbs: verify (the gate, recorded), drift between the sides, and the approved
baseline (save, check)."""

from __future__ import annotations

import sys
from typing import Any

import click

from orchestrator.cli.context import actor, load
from orchestrator.cli.exit import handles_errors
from orchestrator.cli.render import emit_json, render_drift, render_results


def _standby_or(config: Any, service: str, side: str | None) -> Any:
    """The side asked for, or the standby side (the one the router does not send traffic to)."""
    from orchestrator.sides import other_side
    from orchestrator.traffic import open_router, parse_side

    config.service(service)
    target = parse_side(side)
    if target is None:
        router = open_router(config)
        try:
            target = other_side(router.live(service))
        finally:
            router.close()
    return target


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
    from orchestrator.traffic import open_store
    from orchestrator.verification import verify_side

    config = load(ctx)
    target = _standby_or(config, service, side)
    store = open_store(config)
    # The service's run lock: no rollout patches the side while it is judged (LockHeld,
    # exit 5), and the verdict is recorded for the generation read at the start.
    from orchestrator.rollout import new_run_id

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
        click.echo(f"{service} {target}: {out.summary} in {out.report.seconds:.1f} s")
        render_results(out.report.results, out.report.hosts)
        for w in out.warnings:
            click.secho(f"  warning: {w}", fg="yellow")
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
    hashes. The standby may differ from the live side only in the patched packages; hosts
    within a side must match. Exit 3 on drift."""
    from orchestrator.verification import side_drift

    config = load(ctx)
    target = _standby_or(config, service, side)
    report = side_drift(config, service, target)
    _finish_drift(report, {"service": service, "side": target},
                  f"{service} {target} vs the other side",
                  f"{service}: drift between or within the sides", as_json)


@click.group("baseline")
def baseline() -> None:
    """An approved fingerprint of a service's hosts, kept next to the config."""


def _baseline_path(config: Any, service: str, path: str | None) -> Any:
    return config.resolve(path) if path else config.base_dir / "baselines" / f"{service}.json"


def _side_fingerprints(config: Any, service: str, sides: list[Any]) -> Any:
    from orchestrator.inventory import load_fleet
    from orchestrator.probes.drift import read_fingerprints
    from orchestrator.probes.gate import targets_for

    fleet = load_fleet(config).service(service)
    targets = targets_for(config, [h for s in sides for h in fleet.side(s)])
    files = config.service(service).drift.files
    fps, errors = read_fingerprints(targets, files)
    return [t.name for t in targets], files, fps, errors


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
    from orchestrator.probes.baseline import (
        BaselineUnavailable,
        baseline_document,
        write_baseline,
    )
    from orchestrator.traffic import open_router, parse_side

    config = load(ctx)
    config.service(service)
    target = parse_side(side)
    if target is None:
        router = open_router(config)
        try:
            target = router.live(service)
        finally:
            router.close()
    hosts, files, fps, errors = _side_fingerprints(config, service, [target])
    if errors or not fps:
        why = "; ".join(f"{h}: {e}" for h, e in sorted(errors.items())) or "no hosts"
        raise BaselineUnavailable(f"{service} {target}: cannot read every host: {why}")
    out = _baseline_path(config, service, path)
    doc = baseline_document(service, target, hosts, files, [fps[h] for h in hosts])
    write_baseline(out, doc)
    counts = {k: len(v) for k, v in doc["fingerprint"].items()}
    if as_json:
        emit_json({"path": str(out), "service": service, "side": target, "counts": counts})
    else:
        click.echo(f"saved {service} {target} baseline ({len(hosts)} hosts) to {out}: {counts}")


@baseline.command("check")
@click.argument("service")
@click.option("--side", type=click.Choice(["blue", "green"]), help="Default: both sides.")
@click.option("--file", "path", help="Default: baselines/SERVICE.json next to the config.")
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
@handles_errors
def baseline_check(
    ctx: click.Context, service: str, side: str | None, path: str | None, as_json: bool
) -> None:
    """Compare hosts against the approved baseline; exit 3 on any difference."""
    import time

    from orchestrator.probes.baseline import check_against, read_baseline

    config = load(ctx)
    config.service(service)
    source = _baseline_path(config, service, path)
    approved = read_baseline(source)
    started = time.monotonic()
    sides: list[Any] = [side] if side else ["blue", "green"]
    hosts, _, fps, errors = _side_fingerprints(config, service, sides)
    report = check_against(hosts, fps, errors, approved, time.monotonic() - started)
    _finish_drift(report, {"service": service, "baseline": str(source)},
                  f"{service} vs {source}", f"{service}: hosts differ from the baseline {source}",
                  as_json)


