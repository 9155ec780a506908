"""Security advisories: `exposure` (open CVEs per service, side and host, from real feeds)
and what `campaign new` and the lab demo share with it."""

from __future__ import annotations

import sys
from typing import Any

import click

from orchestrator.cli.context import load
from orchestrator.cli.exit import handles_errors
from orchestrator.cli.render import emit_json
from orchestrator.text import one_line

FEED_HELP = ("[KIND:]FILE|URL of a CVE feed (KIND: debian-tracker, osv, changelog); repeat for "
              "several; default: advisories.feeds of bluegreen.yml")
URGENCY = click.Choice(["unimportant", "low", "medium", "high", "critical"])


def _live_sides(config: Any, names: list[str]) -> dict[str, str | None]:
    """Each service's live side, asked of its site's router (None: not readable)."""
    from orchestrator.errors import RouterError
    from orchestrator.traffic import open_router

    live: dict[str, str | None] = {}
    for view in config.views():
        mine = [name for name in names if name in view.services]
        if not mine:
            continue
        router = open_router(view)
        try:
            for name in mine:
                try:
                    live[name] = router.live(name)
                except RouterError:
                    live[name] = None
        finally:
            router.close()
    return live


@click.command("exposure")
@click.argument("service", required=False)
@click.option("--side", type=click.Choice(["blue", "green"]), help="Default: both sides.")
@click.option("--feed", "feeds", multiple=True, metavar="[KIND:]FILE|URL", help=FEED_HELP)
@click.option("--min-urgency", type=URGENCY, help="Default: advisories.min_urgency (low).")
@click.option("--offline", is_flag=True, help="Use cached feeds only.")
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
@handles_errors
def exposure(ctx: click.Context, service: str | None, side: str | None, feeds: tuple[str, ...],
             min_urgency: str | None, offline: bool, as_json: bool) -> None:
    """Open CVEs per service, side and host: package, installed and fixed version, urgency,
    whether the configured repositories offer the fix. Exit 0: nothing open at or above
    the threshold; 3: something is; 1: a host could not be read (and nothing open)."""
    sys.exit(show_exposure(ctx, service, side, feeds, min_urgency, offline, as_json))


def show_exposure(ctx: click.Context, service: str | None, side: str | None, feeds: tuple[str, ...],
              min_urgency: str | None, offline: bool, as_json: bool, brief: bool = False) -> int:
    from orchestrator.probes.exposure import fleet_exposure
    from orchestrator.traffic import parse_side

    config = load(ctx, service)
    names = [service] if service else list(config.services)
    for name in names:
        config.service(name)
    chosen = parse_side(side)
    found = fleet_exposure(config, names, [chosen] if chosen else ("blue", "green"),
                           threshold=min_urgency, feed_args=feeds, offline=offline or None)
    record_measurement(config, found)
    live = _live_sides(config, names)
    code = 3 if found.exposed else 1 if found.unread else 0
    if as_json:
        emit_json({**found.as_dict(live), "exit_code": code})
        return code
    for note in found.catalog.notes:
        click.echo(f"note: {one_line(note)}", err=True)
    click.echo(f"feeds: {'; '.join(found.catalog.feeds)} ({len(found.catalog)} CVE records)")
    for s in found.sides:
        sm = s.summary(found.threshold)
        role = "live" if live.get(s.service) == s.side else "standby"
        counts = ", ".join(f"{n} {u}" for u, n in sm["by_urgency"].items()) or "none"
        color = "red" if sm["hosts_exposed"] else "green"
        click.secho(f"{s.service} {s.side} ({role}): {sm['hosts_exposed']} of {sm['hosts']} hosts "
                    f"exposed, {sm['cves']} CVEs open at or above {found.threshold} ({counts}), "
                    f"{sm['fix_available']} with a fix in the repositories", fg=color)
        groups: dict[str, list[str]] = {}
        for h in s.hosts:
            key = one_line(h.error) if h.error else "\n".join(
                one_line(line) for line in _exposure_lines(h.at_or_above(found.threshold)))
            groups.setdefault(key, []).append(h.host)
        for key, hosts in groups.items():
            if any(h.error for h in s.hosts if h.host in hosts):
                click.secho(f"  {', '.join(hosts)}: NOT READ: {key}", fg="yellow")
            elif not brief or not key:
                click.echo(f"  {', '.join(hosts)}:{' clean' if not key else ''}")
                for line in key.splitlines():
                    click.echo(f"    {line}")
    return code


def record_measurement(config: Any, found: Any) -> None:
    """Leave what was measured for the dashboard and the metrics (`advisories.measured`);
    a record that cannot be written is said, and changes nothing else."""
    from datetime import UTC, datetime

    from orchestrator.advisories import measured
    from orchestrator.errors import BluegreenError

    path = measured.path_in(config.advisories_cache_path)
    try:
        measured.save(path, found.measurements(datetime.now(UTC)))
    except (OSError, BluegreenError) as exc:
        click.echo(f"note: exposure record {path} not written (the dashboard keeps the "
                   f"older one): {getattr(exc, 'message', None) or exc}", err=True)


def _exposure_lines(open_cves: list[Any]) -> list[str]:
    """One line per (source, installed, fixed): the CVEs it closes, most urgent first."""
    rows: dict[tuple[str, str, str], list[Any]] = {}
    for c in open_cves:
        rows.setdefault((c.source, c.installed, c.fixed_version or "-"), []).append(c)
    out = []
    for (source, installed, fixed), cves in rows.items():
        fix = ("fix available" + (f" {cves[0].available_version}" if cves[0].available_version
                                  else "") if cves[0].fix_available
               else "no fix yet" if fixed == "-" else "fix not in the repositories"
               if cves[0].fix_available is False else "fix availability unknown")
        names = ", ".join(f"{c.cve} ({c.urgency})" for c in cves[:6])
        more = f" +{len(cves) - 6} more" if len(cves) > 6 else ""
        out.append(f"{source} {installed} -> {fixed} [{', '.join(cves[0].packages)}; {fix}]: "
                   f"{names}{more}")
    return out
