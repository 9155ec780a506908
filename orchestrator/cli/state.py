"""State store verbs: `state migrate` (create or update the schema of the config's store)
and `state copy` (move a store, audit chain intact, e.g. SQLite -> the team's PostgreSQL)."""

from __future__ import annotations

from pathlib import Path

import click

from orchestrator.cli.context import actor, load
from orchestrator.cli.exit import handles_errors
from orchestrator.cli.render import emit_json
from orchestrator.errors import BadInput
from orchestrator.state.registry import StateLocation, parse_state_url


@click.group("state")
def state() -> None:
    """The state store: schema migrations, and copying a store to another backend."""


def _location(option: str, url: str) -> StateLocation:
    try:
        return parse_state_url(url)
    except ValueError as exc:
        raise BadInput(f"{option}: {exc}", hint="e.g. --from sqlite:///srv/bluegreen/state.db "
                       "--to postgresql://bluegreen@db.example/bluegreen") from exc


@state.command("migrate")
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
@handles_errors
def migrate(ctx: click.Context, as_json: bool) -> None:
    """Create or update the tables of the config's state store (state.url or state.path)
    to this bluegreen's schema. Run once per upgrade; safe to run again, and from two
    machines at once."""
    from orchestrator.state.registry import backend

    config = load(ctx)
    location = config.state
    before, after = backend(location).migrate(location, audit_key_file=config.audit.key_file)
    if as_json:
        emit_json({"store": location.label, "schema_before": before, "schema": after})
        return
    change = "already at" if before == after else f"migrated from {before} to"
    click.echo(f"{location.label}: schema {change} version {after}")


@state.command("copy")
@click.option("--from", "source", required=True, metavar="URL",
              help="The store to copy: sqlite:///PATH or postgresql://USER@HOST/DB.")
@click.option("--to", "target", required=True, metavar="URL",
              help="An empty store to copy into (its schema is created or updated first).")
@click.option("--key-file", type=click.Path(dir_okay=False), default=None,
              help="The audit key of the source chain (default: audit.key beside a SQLite "
              "source). Every machine writing the target needs this same key.")
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
@handles_errors
def copy(ctx: click.Context, source: str, target: str, key_file: str | None,
         as_json: bool) -> None:
    """Copy every service, side, run, journal entry and audit record from one store to
    another, hashes and MACs unchanged, and append one `state.copy` record naming the
    source; both chains are verified with the key. The source is not changed."""
    from orchestrator.state.copy import copy_store

    src, dst = _location("--from", source), _location("--to", target)
    if src.url == dst.url:
        raise BadInput("--from and --to name the same store", hint="copy into another store")
    if key_file is None:
        if src.path is None:
            raise BadInput("--key-file is needed when the source is not a SQLite file",
                           hint="give the audit key file the source chain was written with")
        key = src.path.with_name("audit.key")
    else:
        key = Path(key_file)
    if not key.is_file():
        raise BadInput(f"audit key {key} does not exist",
                       hint="give the key the source chain was written with (--key-file)")
    done = copy_store(src, dst, audit_key_file=key, actor=actor(ctx))
    if as_json:
        emit_json({"from": done.source, "to": done.target, "rows": done.rows,
                   "source_head": f"{done.source_head.count}:{done.source_head.head_hash}",
                   "head": f"{done.target_head.count}:{done.target_head.head_hash}"})
        return
    counts = ", ".join(f"{n} {table}" for table, n in done.rows.items())
    click.echo(f"copied {done.source} -> {done.target}: {counts}")
    click.echo(f"  audit chain verifies on both sides; source head "
               f"{done.source_head.count}:{done.source_head.head_hash}, target head "
               f"{done.target_head.count}:{done.target_head.head_hash} (+1 state.copy record)")
