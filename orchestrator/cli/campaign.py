"""Campaign verbs: plan, run, resume, status, approve, abort, and `report` (a run's
evidence)."""

from __future__ import annotations

import sys
from typing import Any

import click

from orchestrator.cli.advisories import FEED_HELP, URGENCY
from orchestrator.cli.context import actor, load, witness_step
from orchestrator.cli.exit import handles_errors
from orchestrator.cli.render import emit_json
from orchestrator.errors import BadInput
from orchestrator.text import one_line, terminal


@click.group("campaign")
def campaign() -> None:
    """Patch campaigns: advisories applied to many services in waves, inside a maintenance
    window, with approvals; resumable (also after kill -9) and abortable.

    \b
    Exit codes of run/resume: 0 done, awaiting approval or converge pending (see status);
    3/4 a service failed verification / rolled back; 5 a service is locked by another run or
    campaign; 6 outside the window: nothing more flipped, the rest deferred."""


def _show_campaign_event(ev: Any) -> None:
    if ev.kind == "wave":
        click.secho(f"== {one_line(ev.message)}", fg="magenta", err=True)
    elif ev.kind == "progress":
        click.secho(f"   progress: {one_line(ev.message)}", fg="cyan", err=True)
    elif ev.kind == "service":
        click.secho(f"-- {one_line(ev.message)}", fg="green", err=True)
    else:
        click.echo(f"     {one_line(ev.message)}", err=True)


def _campaign_engine(ctx: click.Context, config: Any, as_json: bool, wait: bool,
                     workers: bool = False) -> Any:
    from orchestrator.campaign.runner import CampaignRunner
    from orchestrator.traffic import open_router, open_store

    store, router = open_store(config), open_router(config)
    root = ctx.find_root().obj

    def on_event(ev: Any) -> None:  # after every step that appended records, the head
        witness_step(root)          # is witnessed (also while it waits for the window)
        if not as_json:
            _show_campaign_event(ev)

    return CampaignRunner(
        config, store, router, actor=actor(ctx), on_event=on_event, wait_for_window=wait,
        workers=workers,
    ), router


def _finish_campaign(result: Any, as_json: bool) -> None:
    if as_json:
        emit_json(result.as_dict())
    else:
        color = "green" if result.exit_code == 0 else "yellow" if result.exit_code == 6 else "red"
        # the run's message may already begin with its status ("deferred: ..."): once
        head = "" if result.message.startswith(f"{result.status}:") else f"{result.status}: "
        click.secho(f"{head}{terminal(result.message)}", fg=color)
        for svc, info in result.services.items():
            click.echo(f"  {svc:<12} wave {info.wave}  {info.status}")
    sys.exit(result.exit_code)


@campaign.command("plan")
@click.argument("file", type=click.Path(dir_okay=False))
@click.option("--check", is_flag=True, help="Ask Ansible (check mode) what would change per host.")
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
@handles_errors
def campaign_plan(ctx: click.Context, file: str, check: bool, as_json: bool) -> None:
    """Per service: hosts, package changes, wave; whether the window is open and when it
    opens next. Changes nothing."""
    from orchestrator.campaign.model import load_campaign
    from orchestrator.campaign.plan import plan_campaign
    from orchestrator.traffic import open_router

    config = load(ctx)
    camp = load_campaign(file)
    router = open_router(config)
    try:
        doc = plan_campaign(config, router, camp, check=check).as_dict()
    finally:
        router.close()
    if as_json:
        emit_json(doc)
        return
    w = doc["window"]
    click.echo(f"campaign {doc['campaign']}: window {'OPEN' if w['open'] else 'closed'}"
               f" ({w['reason']}); next open: {w['next_open'] or '-'}; closes: {w['closes_at'] or '-'}")
    for a in doc["advisories"]:
        click.echo(f"  advisory {a['id']} ({a['severity']}) {', '.join(a['cves'])}")
    for s in doc["services"]:
        click.echo(f"  wave {s['wave']} {s['service']:<10} live={s['live']} patch {s['standby']}"
                   f" ({', '.join(s['hosts'])}): {', '.join(s['packages'])}")
        for host, ch in (s.get("changes") or {}).items():
            changed = ", ".join(f"{k} {v}" for k, v in ch.items()) or "no change"
            click.echo(f"      {one_line(host)}: {one_line(changed)}")
    click.echo(f"  approval: {doc['approval']['mode']}"
               + (f" ({doc['approval']['at']})" if doc["approval"]["mode"] == "manual" else ""))


@campaign.command("new")
@click.option("--feed", "feeds", multiple=True, metavar="[KIND:]FILE|URL", help=FEED_HELP)
@click.option("--min-urgency", type=URGENCY, help="Default: advisories.min_urgency (low).")
@click.option("--services", help="Comma-separated services (default: all), one wave each.")
@click.option("--name", help="Campaign name (default: security-YYYYMMDD).")
@click.option("--offline", is_flag=True, help="Use cached feeds only.")
@click.option("-o", "--output", required=True, type=click.Path(dir_okay=False),
              help="The campaign file to write (must not exist).")
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
@handles_errors
def campaign_new(ctx: click.Context, feeds: tuple[str, ...], min_urgency: str | None,
                 services: str | None, name: str | None, offline: bool, output: str,
                 as_json: bool) -> None:
    """Write a campaign file for review: the CVEs open on the services (either side) at or
    above the threshold, grouped by fixed package version, with the fixed versions the
    configured repositories offer. Run it with `campaign run FILE`."""
    new_campaign(ctx, feeds, min_urgency, services, name, offline, output, as_json)


def new_campaign(ctx: click.Context, feeds: tuple[str, ...], min_urgency: str | None,
                  services: str | None, name: str | None, offline: bool, output: str,
                  as_json: bool) -> Any:
    from pathlib import Path

    from orchestrator.campaign.new import write_new_campaign
    from orchestrator.cli.advisories import record_measurement
    from orchestrator.probes.exposure import fleet_exposure

    config = load(ctx)
    names = [s.strip() for s in services.split(",") if s.strip()] if services else list(
        config.services)
    for n in names:
        config.service(n)
    found = fleet_exposure(config, names, threshold=min_urgency, feed_args=feeds,
                           offline=offline or None)
    record_measurement(config, found)
    made = write_new_campaign(found, names, Path(output), name=name)
    if as_json:
        emit_json(made.as_dict())
        return made.path
    # the feeds' own notes first: entries not read, repositories read unauthenticated
    for note in [*found.catalog.notes, *made.notes]:
        click.echo(f"note: {one_line(note)}", err=True)
    if made.path is None:
        click.echo(f"nothing open at or above {found.threshold} on {', '.join(names)}: "
                   "no campaign written")
        return None
    click.echo(f"wrote {made.path}: {made.advisories} advisories, {made.cves} CVEs, "
               f"{made.packages} packages; review it, then `bluegreen campaign run {made.path}`")
    return made.path


@campaign.command("run")
@click.argument("file", type=click.Path(dir_okay=False))
@click.option("--wait-for-window", is_flag=True, help="Wait for the window instead of exit 6.")
@click.option("--continue", "cont", is_flag=True,
              help="Resume this campaign's unfinished run; if its last run ended, do "
                   "nothing (exit 0). What timers run.")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@click.option("--workers", is_flag=True,
              help="Hand the services to the workers of their sites (`bluegreen worker`, "
                   "PostgreSQL store) and wait until the run ended.")
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
@handles_errors
def campaign_run(
    ctx: click.Context, file: str, wait_for_window: bool, cont: bool, yes: bool,
    workers: bool, as_json: bool,
) -> None:
    """Run a campaign: waves in order, each service patched, verified, flipped and baked
    inside the window (here, or by the sites' workers with --workers)."""

    from orchestrator.campaign.model import load_campaign
    from orchestrator.campaign.runs import NothingToContinue, RunningElsewhere

    config = load(ctx)
    camp = load_campaign(file)
    if workers:  # before anything is opened or written
        from orchestrator.state.queue import check_shared

        check_shared(config.state)
    if not yes:
        if not sys.stdin.isatty():
            raise BadInput("campaign run needs confirmation", hint="pass --yes")
        click.confirm(f"Run campaign {camp.name}?", abort=True)
    engine, router = _campaign_engine(ctx, config, as_json, wait_for_window, workers)
    try:
        result = engine.run(camp, file, continue_run=cont)
    finally:
        router.close()
    if isinstance(result, NothingToContinue | RunningElsewhere):
        _say(result.message, result.as_dict(), as_json)
        return
    _finish_campaign(result, as_json)


def _say(message: str, doc: dict[str, object], as_json: bool) -> None:
    if as_json:
        emit_json(doc)
    else:
        click.echo(terminal(message))


@campaign.command("resume")
@click.argument("name")
@click.option("--wait-for-window", is_flag=True)
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
@handles_errors
def campaign_resume(ctx: click.Context, name: str, wait_for_window: bool, as_json: bool) -> None:
    """Continue an unfinished campaign (deferred, approved, or killed) from its journal."""
    from orchestrator.campaign.runs import find_run

    config = load(ctx)
    engine, router = _campaign_engine(ctx, config, as_json, wait_for_window)
    try:
        result = engine.resume(find_run(engine.store, name, unfinished=True))
    finally:
        router.close()
    _finish_campaign(result, as_json)


@campaign.command("status")
@click.argument("name", required=False)
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
@handles_errors
def campaign_status_cmd(ctx: click.Context, name: str | None, as_json: bool) -> None:
    """The newest run of each campaign (or of NAME): status, approval, per-service progress."""
    from orchestrator.campaign.ops import campaign_status
    from orchestrator.campaign.queued import queue_view
    from orchestrator.campaign.runs import find_run, latest_runs
    from orchestrator.traffic import open_store

    config = load(ctx)
    store = open_store(config)
    runs = [find_run(store, name)] if name else latest_runs(store)
    docs = [campaign_status(store, r, queue_view(config.state, r)).as_dict() for r in runs]
    if as_json:
        emit_json(docs[0] if name else docs)
        return
    if not docs:
        click.echo("no campaign runs")
    for d in docs:
        p = d["progress"]
        click.echo(f"{d['campaign']}: {d['status']} (run {d['run_id']}) services "
                   f"{p['services_done']}/{p['services']}, waves {p['waves_done']}/{p['waves']}")
        if d["result"]:
            click.echo(f"  {d['result']}")
        if d["approval"]:
            click.echo(f"  approved by {d['approval']['actor']} at {d['approval']['at']}")
        for svc, info in d["services"].items():
            who = info.get("worker")
            by = f"  worker {who['host']} pid {who['pid']} ({who['site']})" if who else ""
            click.echo(terminal(f"  {svc:<12} wave {info['wave']}  {info['status']}{by}"))
        for site, seen in (d.get("sites") or {}).items():
            if seen["waiting"] and not seen["live_workers"]:
                click.secho(terminal(f"  site {site}: {seen['waiting']} services wait and no "
                                     f"worker is live (`bluegreen worker --site {site}`)"),
                            fg="yellow")


@campaign.command("approve")
@click.argument("name")
@click.option("--reason", help="Change ticket or note; goes to the audit chain.")
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
@handles_errors
def campaign_approve(ctx: click.Context, name: str, reason: str | None, as_json: bool) -> None:
    """Approve a campaign that awaits approval (the approver is --actor; audited).
    Then `campaign resume NAME` continues it."""
    from orchestrator.campaign.ops import approve
    from orchestrator.traffic import open_store

    approved = approve(open_store(load(ctx)), name, actor(ctx), reason)
    if as_json:
        emit_json(approved.as_dict())
    else:
        click.echo(f"{name}: approved by {approved.actor} at {approved.at}; "
                   f"continue with `bluegreen campaign resume {name}`")


@campaign.command("abort")
@click.argument("name")
@click.option("--reason", default="aborted by operator", show_default=True)
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
@handles_errors
def campaign_abort(ctx: click.Context, name: str, reason: str, as_json: bool) -> None:
    """End an unfinished campaign. Each service stays live on its old side or on a fully
    verified new side; runs are marked aborted. A child still running stops at its next
    step boundary and then releases its lock (a lock is freed here only when its holder
    is gone); whatever it would record after the abort is refused."""
    from orchestrator.campaign.ops import abort
    from orchestrator.traffic import open_store

    aborted = abort(open_store(load(ctx)), name, actor(ctx), reason)
    if as_json:
        emit_json(aborted.as_dict())
    else:
        children = aborted.aborted_children
        click.echo(f"{name}: aborted run {aborted.run_id}"
                   + (f" (and {', '.join(children)})" if children else ""))
        for held in aborted.still_stopping:
            click.echo(f"  still stopping: {held}: it ends at its next step boundary and "
                       "then releases the lock")


@click.command("report")
@click.argument("campaign_name", metavar="CAMPAIGN")
@click.option("--format", "fmt", type=click.Choice(["json", "md", "html", "openvex"]),
              default="md", show_default=True,
              help="openvex: one OpenVEX statement per CVE and host.")
@click.option("--output", type=click.Path(dir_okay=False),
              help="File to write (mode 0600); default: reports_dir/RUN_ID.FORMAT.")
@click.option("--json", "as_json", is_flag=True, help="Print where it was written, as JSON.")
@click.pass_context
@handles_errors
def report_cmd(
    ctx: click.Context, campaign_name: str, fmt: str, output: str | None, as_json: bool
) -> None:
    """Write the evidence of a campaign's newest run (or of a run id): advisories, versions
    before/after per host, probe results, approvals, flips, rollbacks, audit head hash, and
    each advisory's CVEs per host before, after and NOW (the hosts are read, both sides)."""
    from pathlib import Path

    from orchestrator.campaign.report import build_report
    from orchestrator.campaign.runs import find_run
    from orchestrator.evidence.now import read_now
    from orchestrator.evidence.render import default_report_path, write_report
    from orchestrator.traffic import open_router, open_store

    config = load(ctx)
    store = open_store(config)
    run = find_run(store, campaign_name)
    packages = {svc: sorted({p for a in run.params.get("campaign", {}).get("advisories", [])
                             for p in a.get("packages", {})})
                for w in run.params.get("waves", []) for svc in w}
    router = open_router(config)
    try:
        now = read_now(config, router, list(packages), packages)
    finally:
        router.close()
    report = build_report(store, run, now)
    path = write_report(
        report, fmt,
        Path(output) if output else default_report_path(config.reports_path, report, fmt),
    )
    if as_json:
        emit_json({"path": str(path), "format": fmt, "run_id": report.run_id,
                   "status": report.status, "head_hash": report.audit.head_hash})
    else:
        click.echo(str(path))




def demo_campaign(ctx: click.Context, demo_file: Any) -> None:
    """`campaign run FILE --yes` without ending the process on success (for the demo)."""
    from orchestrator.campaign.model import load_campaign

    config = load(ctx)
    engine, router = _campaign_engine(ctx, config, False, False)
    try:
        result = engine.start(load_campaign(demo_file), demo_file)
    finally:
        router.close()
    if result.exit_code != 0:
        _finish_campaign(result, False)
    click.secho(f"{result.status}: {terminal(result.message)}", fg="green")
