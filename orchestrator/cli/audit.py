"""Audit verbs: history (the trail, one record a line) and `audit verify` (the chain, its
keys and its witnesses)."""

from __future__ import annotations

import sys

import click

from orchestrator.cli.context import load
from orchestrator.cli.exit import handles_errors
from orchestrator.cli.render import emit_json
from orchestrator.text import one_line


@click.command("history")
@click.argument("service", required=False)
@click.option("--limit", default=50, show_default=True, type=click.IntRange(1, 100000))
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
@handles_errors
def history(ctx: click.Context, service: str | None, limit: int, as_json: bool) -> None:
    """The audit trail: who changed what, when, why, and the result.

    One record, one line: free text is shown escaped (a newline as \\n, control
    characters as \\xNN); `--json` gives it exactly as stored. `by` is the OS user that
    ran the command (with the sudo user), next to the --actor it claimed."""
    from orchestrator.text import one_line
    from orchestrator.traffic import open_store

    config = load(ctx)
    records = open_store(config).audit_records(service=service, limit=limit)
    if as_json:
        emit_json([r.as_json() for r in records])
        return
    for r in records:
        who = r.os_user or "?"
        if r.sudo_user:
            who = f"{r.sudo_user}>{who}"
        click.echo(
            f"{r.seq:>5} {r.at:%Y-%m-%d %H:%M:%S} {one_line(r.actor):<10} "
            f"by {one_line(who):<12} {one_line(r.command):<24} "
            f"{one_line(r.service) or '-':<8} {one_line(r.result):<10} {one_line(r.reason)}"
        )



@click.group("audit")
def audit() -> None:
    """The tamper-evident audit chain."""


@audit.command("verify")
@click.option("--expect-head", "expect", metavar="SEQ:HASH", multiple=True,
              help="A head you kept (from a report, a ticket, a witness): record SEQ must "
              "have HASH. Repeatable.")
@click.option("--report", "report_file", metavar="FILE", type=click.Path(dir_okay=False),
              help="A campaign report (json, md or html): its audit head must be a prefix "
              "of today's chain.")
@click.option("--require-witness", is_flag=True,
              help="Fail (exit 1) when no witnessed head can be read, instead of warning.")
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
@handles_errors
def audit_verify(ctx: click.Context, expect: tuple[str, ...], report_file: str | None,
                 require_witness: bool, as_json: bool) -> None:
    """Check every record's HMAC, hash and link with the audit key, the stored head, and
    the newest heads the witnesses saw (append-only file, collector copy) or you give.
    Exit 1 naming what was done (edited, deleted, inserted, reordered, truncated, ...)."""
    from orchestrator.state.audit_check import check_chain
    from orchestrator.traffic import open_store

    config = load(ctx)
    result = check_chain(open_store(config), config.state.label, config.audit.witness,
                         expected=expect, report_file=report_file,
                         require_witness=require_witness)
    report = result.report
    if as_json:
        emit_json(result.as_json())
        if not result.ok:
            sys.exit(1)
        return
    for warning in result.warnings:
        click.secho(f"warning: {one_line(warning)}", fg="yellow", err=True)
    broken = result.error()
    if broken is not None:
        for finding in result.findings[1:]:
            click.echo(f"  also: {finding.kind}: {one_line(finding.message)}", err=True)
        raise broken
    parts = f"{report.count} records"
    if report.unkeyed:
        parts += f" ({report.unkeyed} unkeyed before the keyed boundary at {report.keyed_from})"
    click.echo(f"audit chain ok: {parts}, head {report.count}:{report.head_hash}")
    if report.key_id:
        click.echo(f"  key: {config.audit.key_file} (id {report.key_id}): every MAC verifies")
    if report.witness:
        click.echo(f"  witness: {report.witness.source} saw record {report.witness.seq}"
                   f"{' at ' + report.witness.at if report.witness.at else ''}: agrees")
    for given in result.given:
        click.echo(f"  {given.source}: head {given.seq}:{given.hash} is record {given.seq} "
                   "of today's chain")


