"""What every command shares: the global options, the config it loads, who is acting, and
the audit witness that publishes the chain's head when the command ends."""

from __future__ import annotations

from typing import Any

import click


class Ctx:
    """Options shared by every command (passed explicitly, no globals)."""

    def __init__(self, config: str | None, actor: str | None) -> None:
        self.config_path = config
        self.actor = actor
        self.witness: Any = None
        """`CommandWitness` once a config is loaded: the audit head is published when the
        command ends (see `witness_at_exit`)."""

    def loaded(self, config: Any) -> Any:
        if self.witness is None:
            from orchestrator.state.witness import CommandWitness

            self.witness = CommandWitness(config.state, config.audit.witness,
                                          config.audit.key_file)
        return config


def load(ctx: click.Context, service: str | None = None) -> Any:
    """Load and validate bluegreen.yml in full; leave the incident snapshot behind. With
    `service`: the config that service's commands use (`LoadedConfig.for_service`: the
    inventory, ssh and router of its site when the site has its own)."""
    from orchestrator.config import snapshot as config_snapshot
    from orchestrator.config.loaded import load_config

    config = load_config(ctx.obj.config_path)
    config_snapshot.save(config)
    config = ctx.find_root().obj.loaded(config)
    return config if service is None else config.for_service(service)


def load_for_traffic(ctx: click.Context, service: str) -> Any:
    """The validated snapshot when it matches the file's bytes (no YAML, no pydantic),
    else the full load (which refreshes the snapshot); as `service`'s commands use it
    (its site's router when the site has its own)."""
    from orchestrator.config import snapshot as config_snapshot

    snapshot = config_snapshot.load(ctx.obj.config_path)
    if snapshot is None:
        return load(ctx, service)
    return ctx.find_root().obj.loaded(snapshot).for_service(service)


def actor(ctx: click.Context) -> str:
    from orchestrator.traffic import default_actor

    return default_actor(ctx.obj.actor)


def witness_now() -> dict[str, Any] | None:
    """Write the audit head to the witnesses if this command appended records; what they
    said, for `--json` (None: nothing appended, or no config loaded)."""
    ctx = click.get_current_context(silent=True)
    witness = getattr(ctx.find_root().obj, "witness", None) if ctx else None
    if witness is None:
        return None
    results = witness.publish_if_changed()
    if not results:
        return None
    return {"head": f"{witness.last.count}:{witness.last.head_hash}",
            "results": [r.as_json() for r in results]}


def witness_step(obj: Ctx) -> None:
    """In a long-running command (a `watch` round, a campaign's step): publish the head
    now if records were appended since the last publish, so that they cannot be truncated
    unnoticed while the command still runs; warn (stderr) when no witness took it. Takes
    the root `Ctx` (callable from a campaign's worker threads, which have no click
    context); never raises."""
    witness = obj.witness
    if witness is None:
        return
    from orchestrator.state.witness import summary

    before = witness.last
    try:
        results = witness.publish_if_changed()
        problem = summary(results) if witness.last != before else None
    except Exception as exc:  # noqa: BLE001 - a witness must never fail the command
        problem = f"audit head not witnessed: {exc}"
    if problem:
        click.secho(f"warning: {problem}", fg="yellow", err=True)


def witness_at_exit(obj: Ctx) -> None:
    """At the end of every command: publish a new head, and say loudly if no witness
    took it (stderr; the command's own outcome and exit code stay as they are)."""
    if obj.witness is None:
        return
    from orchestrator.state.witness import summary

    try:
        problem = summary(obj.witness.publish_if_changed())
    except Exception as exc:  # noqa: BLE001 - a witness must never fail the command
        problem = f"audit head not witnessed: {exc}"
    if problem:
        click.secho(f"warning: {problem}", fg="yellow", err=True)
