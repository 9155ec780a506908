"""The `bluegreen` command line. The only module that knows about the terminal.

Every command is a thin function over the core: it parses arguments, calls one core
function, renders the typed result (text or `--json`) and maps typed errors to exit codes.
Heavy modules (ansible, pytest, rich) are imported inside the commands that need them, so
`bluegreen --help` and `bluegreen rollback` start fast.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from functools import wraps
from typing import Any, TypeVar

import click

from orchestrator.errors import BadInput, BluegreenError
from orchestrator.text import one_line

EXIT_CODES = """\b
Exit codes:
  0  done
  1  error (router, state store, Ansible, lab)
  2  bad usage or bad input (config, inventory, campaign file, arguments); nothing changed
  3  verification failed; traffic not moved (exposure: a CVE is open at the threshold)
  4  rolled back automatically during bake
  5  lock held by another run
  6  outside the maintenance window / deferred"""

F = TypeVar("F", bound=Callable[..., Any])


def _emit_json(doc: Any) -> None:
    witnessed = _witness_now()
    if witnessed is not None and isinstance(doc, dict):
        doc = {**doc, "audit_witness": witnessed}
    click.echo(json.dumps(doc, indent=2, sort_keys=False, default=str))


def _witness_now() -> dict[str, Any] | None:
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


def _witness_at_exit(obj: Ctx) -> None:
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


def _fail(exc: BluegreenError, as_json: bool) -> None:
    if as_json:
        _emit_json({"error": exc.message, "fix": exc.hint, "exit_code": exc.exit_code})
    else:
        click.secho(f"error: {exc.message}", fg="red", err=True)
        if exc.hint:
            click.echo(f"  fix: {exc.hint}", err=True)
    sys.exit(exc.exit_code)


def handles_errors(func: F) -> F:
    """Turn typed core errors into one clear message and the documented exit code."""

    @wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except BluegreenError as exc:
            _fail(exc, bool(kwargs.get("as_json")))
        except KeyboardInterrupt:
            click.secho("interrupted", fg="yellow", err=True)
            sys.exit(130)

    return wrapper  # type: ignore[return-value]


def _say(msg: str) -> None:
    click.echo(f"  {msg}", err=True)


class Ctx:
    """Options shared by every command (passed explicitly, no globals)."""

    def __init__(self, config: str | None, actor: str | None) -> None:
        self.config_path = config
        self.actor = actor
        self.witness: Any = None
        """`CommandWitness` once a config is loaded: the audit head is published when the
        command ends (see `_witness_at_exit`)."""

    def loaded(self, config: Any) -> Any:
        if self.witness is None:
            from orchestrator.state.witness import CommandWitness

            self.witness = CommandWitness(config.state_path, config.audit.witness)
        return config


@click.group(
    context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100},
    epilog=EXIT_CODES,
)
@click.option(
    "-c",
    "--config",
    "config",
    metavar="FILE",
    envvar="BLUEGREEN_CONFIG",
    help="bluegreen.yml to use (env BLUEGREEN_CONFIG; default ./bluegreen.yml).",
)
@click.option(
    "--actor", metavar="NAME", help="Who is acting, for the audit chain (default: OS user)."
)
@click.version_option(package_name="bluegreen")
@click.pass_context
def main(ctx: click.Context, config: str | None, actor: str | None) -> None:
    """Blue-green patch rollouts: patch the standby side, prove it healthy and secured,
    flip traffic to it at the load balancer, watch it, and keep the old side warm so that
    rollback is one instant flip.

    \b
    Start here:
      bluegreen lab up                 a local fleet to try it on (root)
      bluegreen -c /var/lib/bluegreen-lab/bluegreen.yml status
      bluegreen rollout web            patch web's standby, verify, flip, bake
      bluegreen rollback web --reason INC-4711
    """
    ctx.obj = Ctx(config, actor)
    ctx.call_on_close(lambda: _witness_at_exit(ctx.obj))


# ---- lab -------------------------------------------------------------------------------
@main.group()
def lab() -> None:
    """The local lab: real Debian hosts (systemd-nspawn + sshd), HAProxy and an apt
    repository on this machine, for the demo and the integration tests. Needs root."""


@lab.command("up")
@click.option(
    "--services",
    default="web,api",
    show_default=True,
    help="Comma-separated service names (lowercase letters/digits).",
)
@click.option("--hosts-per-side", default=2, show_default=True, type=click.IntRange(1, 50))
@click.option("--json", "as_json", is_flag=True, help="Print the lab status as JSON.")
@handles_errors
def lab_up(services: str, hosts_per_side: int, as_json: bool) -> None:
    """Build (once) and boot the lab. Idempotent: a second `up` changes nothing."""
    from orchestrator.lab.lab import Lab, LabShape

    shape = LabShape(tuple(s.strip() for s in services.split(",") if s.strip()), hosts_per_side)
    result = Lab(say=_say).up(shape)
    if as_json:
        _emit_json(
            {"changed": result.changed, "seconds": round(result.seconds, 2), **result.status}
        )
        return
    verb = "up" if result.changed else "already up (nothing changed)"
    click.echo(f"lab {verb} in {result.seconds:.1f}s")
    _print_lab_status(result.status)


def _print_lab_status(status: dict[str, Any]) -> None:
    click.echo(f"  config:       {status['config']}")
    click.echo(f"  inventory:    {status['inventory']}")
    click.echo(f"  ssh:          ssh -F {status['ssh_config']} HOST")
    click.echo(f"  haproxy:      {status['haproxy_socket']}")
    for service, url in status["frontends"].items():
        click.echo(f"  frontend {service}: {url}")
    click.echo(f"  {'HOST':<16} {'SERVICE':<8} {'SIDE':<6} {'ADDRESS':<14} STATE")
    for h in status["hosts"]:
        state = "running" if h["running"] else "STOPPED"
        if h["faults"]:
            state += " faults=" + ",".join(h["faults"])
        click.echo(f"  {h['name']:<16} {h['service']:<8} {h['side']:<6} {h['address']:<14} {state}")
    for problem in status.get("problems", []):
        click.secho(f"  problem: {problem}", fg="yellow")


@lab.command("status")
@click.option("--json", "as_json", is_flag=True)
@handles_errors
def lab_status(as_json: bool) -> None:
    """Show the lab: files to use, hosts, frontends."""
    from orchestrator.lab.lab import Lab

    status = Lab().status()
    if as_json:
        _emit_json(status)
    else:
        _print_lab_status(status)


@lab.command("down")
@click.option("--json", "as_json", is_flag=True)
@handles_errors
def lab_down(as_json: bool) -> None:
    """Remove everything the lab made (also after a crashed or half-finished `up`)."""
    from orchestrator.errors import LabError
    from orchestrator.lab.lab import Lab

    result = Lab(say=_say).down()
    if as_json:
        _emit_json(result)
    else:
        click.echo(f"lab down in {result['seconds']}s ({result['killed']} processes stopped)")
    if result["leftovers"]:
        raise LabError(
            "left behind: " + ", ".join(result["leftovers"]),
            hint="run `bluegreen lab down` again; report it if it stays",
        )


@lab.command("fault")
@click.argument("host")
@click.argument(
    "kind", type=click.Choice(["unreachable", "sshd-down", "service-down", "slow", "disk-full"])
)
@handles_errors
def lab_fault(host: str, kind: str) -> None:
    """Inject a fault into a lab host (undo with `lab heal HOST`).

    \b
    unreachable   the host's link is down
    sshd-down     sshd is stopped
    service-down  demo-web is stopped
    slow          the host's link is limited to 64 kbit/s
    disk-full     the host's root filesystem is full
    """
    from orchestrator.lab.lab import Lab

    Lab().fault(host, kind)
    click.echo(f"{host}: {kind}")


@lab.command("heal")
@click.argument("host")
@handles_errors
def lab_heal(host: str) -> None:
    """Undo every fault of a lab host."""
    from orchestrator.lab.lab import Lab

    undone = Lab().heal(host)
    click.echo(f"{host}: healed ({', '.join(undone) or 'no fault was active'})")


@lab.command("reset")
@click.argument("hosts", nargs=-1)
@handles_errors
def lab_reset(hosts: tuple[str, ...]) -> None:
    """Give lab hosts a fresh root (all hosts when none is named) and route to blue."""
    from orchestrator.lab.lab import Lab

    Lab(say=_say).reset(list(hosts) or None)
    click.echo("reset: " + (", ".join(hosts) or "all hosts"))


# ---- config-driven commands -------------------------------------------------------------
def _load(ctx: click.Context) -> Any:
    """Load and validate bluegreen.yml in full; leave the incident snapshot behind."""
    from orchestrator.config import snapshot as config_snapshot
    from orchestrator.config.loaded import load_config

    config = load_config(ctx.obj.config_path)
    config_snapshot.save(config)
    return ctx.find_root().obj.loaded(config)


def _load_for_traffic(ctx: click.Context) -> Any:
    """The validated snapshot when it matches the file's bytes (no YAML, no pydantic),
    else the full load (which refreshes the snapshot)."""
    from orchestrator.config import snapshot as config_snapshot

    snapshot = config_snapshot.load(ctx.obj.config_path)
    return ctx.find_root().obj.loaded(snapshot) if snapshot else _load(ctx)


def _actor(ctx: click.Context) -> str:
    from orchestrator.traffic import default_actor

    return default_actor(ctx.obj.actor)


def _move(ctx: click.Context, config: Any, service: str, to_side: str | None, reason: str, *,
          command: str, force: bool = False, recheck: bool = False) -> Any:
    """Open the state store and the router, move traffic through the kernel, close: shared
    by `rollback` and `flip`."""
    from orchestrator.traffic import FlipRequest, move_traffic, open_router, open_store, parse_side

    config.service(service)
    store, router = open_store(config), open_router(config)
    recheck_hosts = None
    if recheck:
        from orchestrator.rollout import host_recheck

        recheck_hosts = host_recheck(config, service)
    try:
        return move_traffic(store, router, FlipRequest(
            service=service, command=command, reason=reason, actor=_actor(ctx),
            to=parse_side(to_side), force=force, abort_in_flight=True,
            recheck_hosts=recheck_hosts,
        ))
    finally:
        router.close()
        store.close()


@main.command()
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
    out = _move(ctx, _load_for_traffic(ctx), service, to_side, reason, command="rollback")
    if as_json:
        _emit_json(out.as_dict())
    elif out.changed:
        click.echo(
            f"{service}: rolled back {out.from_side} -> {out.to_side} "
            f"in {out.seconds * 1000:.0f} ms"
        )
        if out.aborted_run:
            click.echo(f"  aborted run {out.aborted_run}")
    else:
        click.echo(out.message)
    for note in out.recovered:
        click.echo(f"  (first {note}: it had been interrupted)", err=True)


@main.command()
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
    out = _move(ctx, _load(ctx), service, to_side, reason, command="flip", force=force,
                recheck=not force)
    if as_json:
        _emit_json(out.as_dict())
    else:
        click.echo(f"{service}: {out.from_side} -> {out.to_side}" if out.changed else out.message)
        if out.aborted_run and out.changed:
            click.echo(f"  aborted run {out.aborted_run}")


@main.command()
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
    from orchestrator.traffic import adopt as do_adopt
    from orchestrator.traffic import open_router, open_store, service_status

    config = _load(ctx)
    names = [service] if service else list(config.services)
    for name in names:
        config.service(name)
    store, router = open_store(config), open_router(config)
    try:
        if adopt:
            if not service or not reason:
                raise BadInput(
                    "--adopt needs a SERVICE and --reason",
                    hint="bluegreen status web --adopt --reason 'LB changed by hand, INC-1'",
                )
            do_adopt(store, router, service, _actor(ctx), reason)
        rows = [service_status(config, store, router, n) for n in names]
    finally:
        router.close()
    if as_json:
        docs = [r.as_dict() for r in rows]
        _emit_json(docs[0] if service else docs)
        if any(not r.agrees for r in rows):
            sys.exit(1)
        return
    for r in rows:
        warn = (
            "" if r.agrees else f"  (STATE SAYS {r.state_live}: run `status {r.service} --adopt`)"
        )
        back = f"  rollback -> {r.rollback_to}" if r.rollback_to else "  (no rollback side yet)"
        click.echo(f"{r.service}: live={r.live} standby={r.standby}{back}{warn}")
        for side, info in r.sides.items():
            counted = info["traffic"]
            traffic = (f"  lb: {counted['responses']} responses, {counted['errors_5xx']} 5xx"
                       if counted else "")
            since = f" since {info['since'][:19].replace('T', ' ')}" if info["since"] else ""
            click.echo(f"  {side:<6} {info['state']:<13} patch={info['patch_level'] or '-'}"
                       f"{since}{traffic}")
            if info["reason"] and info["state"] not in ("untouched", "verified"):
                click.echo(f"         {info['reason']}")
        if r.flip_problem:
            click.secho(f"  FLIP PROBLEM: {r.flip_problem}", fg="red")
        if r.pending_flip:
            p = r.pending_flip
            click.secho(f"  pending flip: {p['command']} {p['from_side']} -> {p['to_side']} "
                        f"since {p['at']} (the next traffic command completes or cancels it)",
                        fg="yellow")
        if r.run_in_flight:
            click.echo(
                f"  run in flight: {r.run_in_flight['run_id']} ({r.run_in_flight['status']})"
            )
    if any(not r.agrees for r in rows):
        sys.exit(1)


@main.command()
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

    config = _load(ctx)
    config.service(service)
    specs = [parse_package_arg(p) for p in packages]
    if not yes:
        if not sys.stdin.isatty():
            raise BadInput("rollout needs confirmation", hint="pass --yes for non-interactive runs")
        what = ", ".join(packages) or "the configured packages"
        click.confirm(f"Patch {service}'s standby with {what} and flip to it?", abort=True)
    _run_rollout(ctx, config, as_json, lambda r: r.start(service, specs, reason=reason))


@main.command()
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
    from orchestrator.plan import plan_rollout
    from orchestrator.traffic import open_router

    config = _load(ctx)
    config.service(service)
    specs = [parse_package_arg(p) for p in packages]
    router = open_router(config)
    try:
        out = plan_rollout(config, router, service, specs)
    finally:
        router.close()
    if as_json:
        _emit_json(out.as_dict())
    else:
        click.echo(f"{service}: live={out.live}; would patch {out.standby} with "
                   f"{', '.join(out.packages)}")
        for host, info in out.hosts.items():
            changes = ", ".join(f"{n} {c['from'] or '-'} -> {c['to']}"
                                for n, c in info["changes"].items()) or "no package change"
            state = "" if info["ok"] else f"  PROBLEM: {info['message']}"
            click.echo(f"  {host:<16} {changes}{state}")
        click.echo("  router: " + "; ".join(out.router_commands))
    if not out.ok:
        sys.exit(1)


@main.command()
@click.argument("run_id", required=False)
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
@handles_errors
def resume(ctx: click.Context, run_id: str | None, as_json: bool) -> None:
    """Continue a run that was interrupted (even by kill -9) from its last finished step."""
    from orchestrator.traffic import open_store

    config = _load(ctx)
    store = open_store(config)
    if run_id:
        run = store.get_run(run_id)
        if run is None:
            raise BadInput(f"no run {run_id!r}", hint="see `bluegreen history`")
    else:
        # a campaign's own rollouts are resumed by `campaign resume`, which knows the waves
        pending = [r for r in store.list_runs(status="running")
                   if r.kind == "rollout" and "campaign_run" not in r.params]
        if not pending:
            click.echo("nothing to resume")
            return
        run = pending[-1]
    if run.status not in ("running", "deferred"):
        raise BadInput(f"run {run.run_id} already ended ({run.status})", hint="start a new rollout")
    if "campaign_run" in run.params:  # window and approval belong to the campaign
        name = run.params.get("campaign") or run.params["campaign_run"]
        raise BadInput(
            f"run {run.run_id} is part of campaign {name}: it resumes only with its campaign, "
            "so that the maintenance window and the approval apply",
            hint=f"bluegreen campaign resume {name}",
        )
    _run_rollout(ctx, config, as_json, lambda r: r.resume(run))


class _RolloutProgress:
    """Live progress of a rollout on stderr (rich): steps with their duration, and per host
    each Ansible task's outcome as the runner reports it."""

    _STYLE = {"ok": "green", "changed": "yellow", "failed": "bold red",
              "unreachable": "bold red", "started": "dim"}

    def __init__(self, quiet: bool) -> None:
        self.quiet = quiet
        self._console: Any = None
        self._step_started: dict[str, float] = {}

    def _out(self) -> Any:
        if self._console is None:
            from rich.console import Console

            self._console = Console(stderr=True, highlight=False)
        return self._console

    def __call__(self, ev: Any) -> None:
        import time

        if self.quiet:
            return
        out = self._out()
        if ev.phase == "begin":
            self._step_started[ev.step] = time.monotonic()
            out.print(f"[bold cyan]▶ {ev.step}[/]")
        elif ev.phase == "end":
            took = time.monotonic() - self._step_started.get(ev.step, time.monotonic())
            out.print(f"[bold green]✔ {ev.step}[/] {_esc(ev.message)} [dim]({took:.1f}s)[/]")
        elif ev.step == "patch" and ev.phase == "progress":
            status = ev.data.get("status", "")
            if status in ("skipped", "started") or not ev.data.get("host"):
                return
            style = self._STYLE.get(status, "white")
            out.print(f"   [dim]{ev.data['host']:<16}[/] [{style}]{status:<11}[/] "
                      f"{_esc(str(ev.data.get('task') or ''))}")
        else:
            out.print(f"   {_esc(ev.message)}")


def _esc(text: str) -> str:
    from rich.markup import escape

    return escape(text)


def _run_rollout(ctx: click.Context, config: Any, as_json: bool, go: Callable[[Any], Any]) -> None:
    from orchestrator.errors import BluegreenError as BGE
    from orchestrator.rollout import Rollout
    from orchestrator.traffic import open_router, open_store

    store, router = open_store(config), open_router(config)

    show = _RolloutProgress(quiet=as_json)
    engine = Rollout(config, store, router, actor=_actor(ctx), on_event=show)
    try:
        result = go(engine)
    except BGE as exc:
        if as_json:
            _emit_json(
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
        _emit_json(result.as_dict())
    else:
        click.echo(result.message)


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


def _render_results(results: list[Any], hosts: tuple[str, ...]) -> None:
    """A table host x check: one block per host, a mark per check, evidence for failures."""
    grouped: dict[str, list[Any]] = {h: [] for h in hosts}
    for r in results:
        grouped.setdefault(r.host, []).append(r)
    for host, rows in grouped.items():
        bad = sum(1 for r in rows if r.status != "pass")
        head = click.style("ok", fg="green") if rows and not bad else click.style("FAIL", fg="red")
        click.echo(f"  {host}  {head}  ({len(rows) - bad}/{len(rows)} passed)")
        if not rows:
            click.echo("    " + click.style("error", fg="red") + "  no results for this host")
        for r in sorted(rows, key=lambda r: (r.status == "pass", r.check)):
            mark = click.style(f"{r.status:<5}", fg="green" if r.status == "pass" else "red")
            line = f"    {mark}  {r.check}"
            if r.status != "pass":
                line += f"\n           {r.evidence}"
            click.echo(line)


@main.command()
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

    config = _load(ctx)
    target = _standby_or(config, service, side)
    store = open_store(config)
    # The service's run lock: no rollout patches the side while it is judged (LockHeld,
    # exit 5), and the verdict is recorded for the generation read at the start.
    from orchestrator.rollout import new_run_id

    lock_id = "verify-" + new_run_id(service)
    store.acquire_lock(service, lock_id)
    try:
        out = verify_side(config, store, service, target, actor=_actor(ctx))
    finally:
        store.release_lock(service, lock_id)
    if as_json:
        _emit_json(
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
        _render_results(out.report.results, out.report.hosts)
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
        _emit_json({**doc, **report.as_dict()})
    else:
        click.echo(f"{title}: {report.summary()}")
        _render_drift(report)
    if not report.ok:
        if as_json:
            sys.exit(VerificationFailed.exit_code)
        raise VerificationFailed(failure)


def _render_drift(report: Any) -> None:
    for host, why in sorted(report.errors.items()):
        click.echo(f"  {host}  " + click.style("error", fg="red") + f"  {why}")
    for host, diffs in report.by_host().items():
        if host in report.errors:
            continue
        if not diffs:
            click.echo(f"  {host}  " + click.style("ok", fg="green"))
            continue
        click.echo(f"  {host}  " + click.style(f"{len(diffs)} difference(s)", fg="red"))
        for d in diffs:
            click.echo(f"    {d.describe()}")


@main.command()
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

    config = _load(ctx)
    target = _standby_or(config, service, side)
    report = side_drift(config, service, target)
    _finish_drift(report, {"service": service, "side": target},
                  f"{service} {target} vs the other side",
                  f"{service}: drift between or within the sides", as_json)


@main.group()
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

    config = _load(ctx)
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
        _emit_json({"path": str(out), "service": service, "side": target, "counts": counts})
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

    config = _load(ctx)
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


@main.command()
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

    config = _load(ctx)
    records = open_store(config).audit_records(service=service, limit=limit)
    if as_json:
        _emit_json([r.as_json() for r in records])
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


@main.group()
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

    config = _load(ctx)
    result = check_chain(open_store(config), config.state_path, config.audit.witness,
                         expected=expect, report_file=report_file,
                         require_witness=require_witness)
    report = result.report
    if as_json:
        _emit_json(result.as_json())
        if not result.ok:
            sys.exit(1)
        return
    for warning in result.warnings:
        click.secho(f"warning: {one_line(warning)}", fg="yellow", err=True)
    if not result.ok:
        from orchestrator.errors import AuditBroken

        for finding in result.findings[1:]:
            click.echo(f"  also: {finding.kind}: {one_line(finding.message)}", err=True)
        first = result.findings[0]
        raise AuditBroken(
            f"audit chain broken ({first.kind})"
            + (f" at record {first.seq}" if first.seq else "") + f": {one_line(first.message)}",
            hint="keep the file and the witnesses as evidence; restore the state file from a "
            "backup; investigate who wrote it",
        )
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


@main.command()
@click.argument("service")
@click.option("--reason", required=True)
@click.pass_context
@handles_errors
def unlock(ctx: click.Context, service: str, reason: str) -> None:
    """Release SERVICE's lock by force (audited). Only when its holder is gone."""
    from orchestrator.traffic import open_store

    lock = open_store(_load(ctx)).force_release_lock(service, reason, _actor(ctx))
    click.echo(
        f"{service}: released lock of run {lock.run_id}" if lock else f"{service}: not locked"
    )


# ---- security advisories ----------------------------------------------------------------
_FEED_HELP = ("[KIND:]FILE|URL of a CVE feed (KIND: debian-tracker, osv, changelog); repeat for "
              "several; default: advisories.feeds of bluegreen.yml")
_URGENCY = click.Choice(["unimportant", "low", "medium", "high", "critical"])


def _live_sides(config: Any, names: list[str]) -> dict[str, str | None]:
    from orchestrator.errors import RouterError
    from orchestrator.traffic import open_router

    router = open_router(config)
    try:
        live: dict[str, str | None] = {}
        for name in names:
            try:
                live[name] = router.live(name)
            except RouterError:
                live[name] = None
        return live
    finally:
        router.close()


@main.command()
@click.argument("service", required=False)
@click.option("--side", type=click.Choice(["blue", "green"]), help="Default: both sides.")
@click.option("--feed", "feeds", multiple=True, metavar="[KIND:]FILE|URL", help=_FEED_HELP)
@click.option("--min-urgency", type=_URGENCY, help="Default: advisories.min_urgency (low).")
@click.option("--offline", is_flag=True, help="Use cached feeds only.")
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
@handles_errors
def exposure(ctx: click.Context, service: str | None, side: str | None, feeds: tuple[str, ...],
             min_urgency: str | None, offline: bool, as_json: bool) -> None:
    """Open CVEs per service, side and host: package, installed and fixed version, urgency,
    whether the configured repositories offer the fix. Exit 0: nothing open at or above
    the threshold; 3: something is; 1: a host could not be read (and nothing open)."""
    sys.exit(_exposure(ctx, service, side, feeds, min_urgency, offline, as_json))


def _exposure(ctx: click.Context, service: str | None, side: str | None, feeds: tuple[str, ...],
              min_urgency: str | None, offline: bool, as_json: bool, brief: bool = False) -> int:
    from orchestrator.probes.exposure import fleet_exposure
    from orchestrator.traffic import parse_side

    config = _load(ctx)
    names = [service] if service else list(config.services)
    for name in names:
        config.service(name)
    chosen = parse_side(side)
    found = fleet_exposure(config, names, [chosen] if chosen else ("blue", "green"),
                           threshold=min_urgency, feed_args=feeds, offline=offline or None)
    live = _live_sides(config, names)
    code = 3 if found.exposed else 1 if found.unread else 0
    if as_json:
        _emit_json({**found.as_dict(live), "exit_code": code})
        return code
    for note in found.catalog.notes:
        click.echo(f"note: {note}", err=True)
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
            key = h.error or "\n".join(_exposure_lines(h.at_or_above(found.threshold)))
            groups.setdefault(key, []).append(h.host)
        for key, hosts in groups.items():
            if any(h.error for h in s.hosts if h.host in hosts):
                click.secho(f"  {', '.join(hosts)}: NOT READ: {key}", fg="yellow")
            elif not brief or not key:
                click.echo(f"  {', '.join(hosts)}:{' clean' if not key else ''}")
                for line in key.splitlines():
                    click.echo(f"    {line}")
    return code


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


# ---- campaigns, reports, schedules ----------------------------------------------------
@main.group()
def campaign() -> None:
    """Patch campaigns: advisories applied to many services in waves, inside a maintenance
    window, with approvals; resumable (also after kill -9) and abortable.

    \b
    Exit codes of run/resume: 0 done, awaiting approval or converge pending (see status);
    3/4 a service failed verification / rolled back; 5 a service is locked by another run or
    campaign; 6 outside the window: nothing more flipped, the rest deferred."""


def _show_campaign_event(ev: Any) -> None:
    if ev.kind == "wave":
        click.secho(f"== {ev.message}", fg="magenta", err=True)
    elif ev.kind == "progress":
        click.secho(f"   progress: {ev.message}", fg="cyan", err=True)
    elif ev.kind == "service":
        click.secho(f"-- {ev.message}", fg="green", err=True)
    else:
        click.echo(f"     {ev.message}", err=True)


def _campaign_engine(ctx: click.Context, config: Any, as_json: bool, wait: bool) -> Any:
    from orchestrator.campaign.runner import CampaignRunner
    from orchestrator.traffic import open_router, open_store

    store, router = open_store(config), open_router(config)
    on_event = None if as_json else _show_campaign_event
    return CampaignRunner(
        config, store, router, actor=_actor(ctx), on_event=on_event, wait_for_window=wait
    ), router


def _finish_campaign(result: Any, as_json: bool) -> None:
    if as_json:
        _emit_json(result.as_dict())
    else:
        color = "green" if result.exit_code == 0 else "yellow" if result.exit_code == 6 else "red"
        click.secho(f"{result.status}: {result.message}", fg=color)
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

    config = _load(ctx)
    camp = load_campaign(file)
    router = open_router(config)
    try:
        doc = plan_campaign(config, router, camp, check=check).as_dict()
    finally:
        router.close()
    if as_json:
        _emit_json(doc)
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
            click.echo(f"      {host}: {', '.join(f'{k} {v}' for k, v in ch.items()) or 'no change'}")
    click.echo(f"  approval: {doc['approval']['mode']}"
               + (f" ({doc['approval']['at']})" if doc["approval"]["mode"] == "manual" else ""))


@campaign.command("new")
@click.option("--feed", "feeds", multiple=True, metavar="[KIND:]FILE|URL", help=_FEED_HELP)
@click.option("--min-urgency", type=_URGENCY, help="Default: advisories.min_urgency (low).")
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
    _campaign_new(ctx, feeds, min_urgency, services, name, offline, output, as_json)


def _campaign_new(ctx: click.Context, feeds: tuple[str, ...], min_urgency: str | None,
                  services: str | None, name: str | None, offline: bool, output: str,
                  as_json: bool) -> Any:
    from pathlib import Path

    from orchestrator.campaign.new import write_new_campaign
    from orchestrator.probes.exposure import fleet_exposure

    config = _load(ctx)
    names = [s.strip() for s in services.split(",") if s.strip()] if services else list(
        config.services)
    for n in names:
        config.service(n)
    found = fleet_exposure(config, names, threshold=min_urgency, feed_args=feeds,
                           offline=offline or None)
    made = write_new_campaign(found, names, Path(output), name=name)
    if as_json:
        _emit_json(made.as_dict())
        return made.path
    for note in made.notes:
        click.echo(f"note: {note}", err=True)
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
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
@handles_errors
def campaign_run(
    ctx: click.Context, file: str, wait_for_window: bool, cont: bool, yes: bool, as_json: bool
) -> None:
    """Run a campaign: waves in order, each service patched, verified, flipped and baked
    inside the window."""
    from orchestrator.campaign.model import load_campaign
    from orchestrator.campaign.ops import campaign_runs

    config = _load(ctx)
    camp = load_campaign(file)
    if not yes:
        if not sys.stdin.isatty():
            raise BadInput("campaign run needs confirmation", hint="pass --yes")
        click.confirm(f"Run campaign {camp.name}?", abort=True)
    engine, router = _campaign_engine(ctx, config, as_json, wait_for_window)
    try:
        runs = campaign_runs(engine.store, camp.name)
        unfinished = [r for r in runs if r.status in ("running", "deferred")]
        if cont and unfinished:
            result = engine.resume(unfinished[-1])
        elif cont and runs:
            # What the timer runs: it continues a run, and never starts one again after the
            # last run ended (done, failed, rolled back, aborted).
            last = runs[-1]
            when = last.finished_at.isoformat() if last.finished_at else "?"
            message = (f"campaign {camp.name}: nothing to continue: the last run {last.run_id}"
                       f" ended {last.status} at {when}; a new run needs `bluegreen campaign "
                       f"run {file}` without --continue")
            if as_json:
                _emit_json({"campaign": camp.name, "status": "nothing_to_continue",
                            "last_run": last.run_id, "last_status": last.status,
                            "message": message, "exit_code": 0})
            else:
                click.echo(message)
            return
        else:
            from pathlib import Path

            result = engine.start(camp, Path(file))
    finally:
        router.close()
    _finish_campaign(result, as_json)


@campaign.command("resume")
@click.argument("name")
@click.option("--wait-for-window", is_flag=True)
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
@handles_errors
def campaign_resume(ctx: click.Context, name: str, wait_for_window: bool, as_json: bool) -> None:
    """Continue an unfinished campaign (deferred, approved, or killed) from its journal."""
    from orchestrator.campaign.ops import find_run

    config = _load(ctx)
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
    from orchestrator.campaign.ops import campaign_runs, campaign_status, find_run
    from orchestrator.traffic import open_store

    store = open_store(_load(ctx))
    if name:
        runs = [find_run(store, name)]
    else:
        latest: dict[str, Any] = {}
        for r in campaign_runs(store):
            latest[str(r.params.get("name"))] = r
        runs = list(latest.values())
    docs = [campaign_status(store, r).as_dict() for r in runs]
    if as_json:
        _emit_json(docs[0] if name else docs)
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
            click.echo(f"  {svc:<12} wave {info['wave']}  {info['status']}")


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

    doc = approve(open_store(_load(ctx)), name, _actor(ctx), reason)
    if as_json:
        _emit_json(doc)
    else:
        click.echo(f"{name}: approved by {doc['actor']} at {doc['at']}; "
                   f"continue with `bluegreen campaign resume {name}`")


@campaign.command("abort")
@click.argument("name")
@click.option("--reason", default="aborted by operator", show_default=True)
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
@handles_errors
def campaign_abort(ctx: click.Context, name: str, reason: str, as_json: bool) -> None:
    """End an unfinished campaign. Each service stays live on its old side or on a fully
    verified new side; runs are marked aborted, locks released."""
    from orchestrator.campaign.ops import abort
    from orchestrator.traffic import open_store

    doc = abort(open_store(_load(ctx)), name, _actor(ctx), reason)
    if as_json:
        _emit_json(doc)
    else:
        click.echo(f"{name}: aborted run {doc['run_id']}"
                   + (f" (and {', '.join(doc['aborted_children'])})" if doc["aborted_children"] else ""))


@main.command("report")
@click.argument("campaign_name", metavar="CAMPAIGN")
@click.option("--format", "fmt", type=click.Choice(["json", "md", "html", "openvex"]),
              default="md", show_default=True, help="openvex: one OpenVEX statement per CVE and host.")
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

    from orchestrator.campaign.evidence import read_now
    from orchestrator.campaign.ops import find_run
    from orchestrator.campaign.report import build_report, default_report_path, write_report
    from orchestrator.traffic import open_router, open_store

    config = _load(ctx)
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
    doc = build_report(store, run, now)
    path = write_report(
        doc, fmt, Path(output) if output else default_report_path(config.reports_path, doc, fmt)
    )
    if as_json:
        _emit_json({"path": str(path), "format": fmt, "run_id": doc["run_id"],
                    "status": doc["status"], "head_hash": doc["audit"]["head_hash"]})
    else:
        click.echo(str(path))


@main.group()
def schedule() -> None:
    """Start campaigns at their maintenance window with systemd timers (or cron)."""


@schedule.command("install")
@click.argument("file", type=click.Path(dir_okay=False, exists=True))
@click.option("--dir", "directory", type=click.Path(file_okay=False),
              help="Write the units here instead of /etc/systemd/system.")
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
@handles_errors
def schedule_install(ctx: click.Context, file: str, directory: str | None, as_json: bool) -> None:
    """Write bluegreen-campaign-NAME.timer/.service (OnCalendar from the window) and print
    the equivalent cron lines; `systemd-analyze verify` is run on what was written."""
    from pathlib import Path

    from orchestrator.campaign.model import load_campaign
    from orchestrator.schedule.systemd import install_units, verify_units

    config = _load(ctx)
    camp = load_campaign(file)
    units = install_units(camp.name, Path(file), camp.window, config.path,
                          Path(directory) if directory else None)
    ok, output = verify_units([units.service, units.timer])
    doc = {"timer": str(units.timer), "service": str(units.service),
           "on_calendar": units.on_calendar, "command": units.command, "cron": units.cron,
           "verified": ok, "verify_output": output}
    if as_json:
        _emit_json(doc)
    else:
        click.echo(f"wrote {units.timer}\nwrote {units.service}")
        click.echo("OnCalendar: " + "; ".join(units.on_calendar))
        click.echo("systemd-analyze verify: " + ("ok" if ok else "not run" if ok is None else "FAILED"))
        if output and not ok:
            click.echo(output)
        click.echo("cron (hosts without systemd), e.g. /etc/cron.d/bluegreen-" + camp.name + ":")
        for line in units.cron:
            click.echo("  " + line)
        if directory is None:
            click.echo(f"enable: systemctl daemon-reload && systemctl enable --now {units.timer.name}")
    if ok is False:
        from orchestrator.errors import BluegreenError as BGE

        raise BGE("systemd-analyze verify failed on the written units", hint=output[:500])


@schedule.command("list")
@click.option("--dir", "directory", type=click.Path(file_okay=False))
@click.option("--json", "as_json", is_flag=True)
@handles_errors
def schedule_list(directory: str | None, as_json: bool) -> None:
    """Campaign timers written by `schedule install`."""
    from pathlib import Path

    from orchestrator.schedule.systemd import list_units

    rows = list_units(Path(directory) if directory else None)
    if as_json:
        _emit_json(rows)
        return
    for r in rows:
        click.echo(f"{r['name']:<24} {r['on_calendar']}  {r['campaign_file']}")


@schedule.command("remove")
@click.argument("name")
@click.option("--dir", "directory", type=click.Path(file_okay=False))
@handles_errors
def schedule_remove(name: str, directory: str | None) -> None:
    """Delete a campaign's timer and service units."""
    from pathlib import Path

    from orchestrator.schedule.systemd import remove_units

    for path in remove_units(name, Path(directory) if directory else None):
        click.echo(f"removed {path}")
    if directory is None:
        click.echo("then: systemctl daemon-reload")


@lab.command("demo")
@click.option("--service", default="web", show_default=True)
@click.pass_context
@handles_errors
def lab_demo(ctx: click.Context, service: str) -> None:
    """The whole job on the lab: lab up, the real CVEs open on it, a campaign made from them
    (`campaign new`) run over both services (patch the standby, verify, flip, bake), the
    CVEs closed on the live sides, a rollback on command (exposed again), audit check, the
    evidence report and its OpenVEX form. Safe to run again."""
    from orchestrator.lab.lab import Lab

    def banner(text: str) -> None:
        click.secho(f"\n=== {text}", fg="magenta", bold=True)

    the_lab = Lab(say=_say)
    banner("1. the lab: real Debian hosts (nspawn + sshd), HAProxy, a lab apt repository with "
           "the real security updates Debian has for the image (bookworm-security)")
    was_up = the_lab.load() is not None
    ctx.invoke(lab_up, services="web,api", hosts_per_side=2, as_json=False)
    if was_up:
        banner("   (lab was already up: resetting hosts, traffic and state for a clean demo)")
        the_lab.reset()
        import shutil

        shutil.rmtree(the_lab.paths.root / "state", ignore_errors=True)
        # a new chain under the old witness would rightly be reported as a replaced store
        the_lab.paths.witness_file.unlink(missing_ok=True)
    ctx.obj.config_path = str(the_lab.paths.config)
    banner("2. before: who is live, and the CVEs open on every host (from the real changelogs "
           "of the packages the lab repository offers)")
    ctx.invoke(status, service=None, adopt=False, reason=None, as_json=False)
    _exposure(ctx, None, None, (), "high", False, False)
    banner("3. a campaign from what is open at or above high (`campaign new`): one advisory per "
           "package and fixed version")
    import time

    demo_file = the_lab.paths.root / "campaigns" / f"security-demo-{int(time.time())}.yml"
    made = _campaign_new(ctx, (), "high", "web,api", "security-demo", False, str(demo_file),
                         False)
    if made is None:
        raise BadInput("nothing is open on the lab: no campaign to run",
                       hint="`bluegreen lab down`, then run the demo again for fresh hosts")
    banner(f"4. campaign {demo_file.name}: web, then api: patch each standby, verify "
           "(versions, nothing runs replaced libraries), flip, bake under traffic")
    _demo_campaign(ctx, demo_file)
    ctx.invoke(status, service=None, adopt=False, reason=None, as_json=False)
    banner("5. after: the live sides are clean; the old sides (standby, no traffic) still "
           "exposed")
    _exposure(ctx, None, None, (), "high", False, False, brief=True)
    banner(f"6. incident! roll {service} back in one flip: {service} is exposed again")
    ctx.invoke(
        rollback, service=service, reason="INC-4711 demo incident", to_side=None, as_json=False
    )
    _exposure(ctx, service, None, (), "high", False, False, brief=True)
    banner("7. the audit trail, and its hash chain verified")
    ctx.invoke(history, service=None, limit=20, as_json=False)
    ctx.invoke(audit_verify, as_json=False)
    banner("8. the evidence: per host each advisory's CVEs before / after / now, probe results, "
           "flips, rollbacks; and the same as OpenVEX")
    ctx.invoke(report_cmd, campaign_name="security-demo", fmt="md", output=None, as_json=False)
    ctx.invoke(report_cmd, campaign_name="security-demo", fmt="openvex", output=None,
               as_json=False)
    click.secho(
        "\ndemo done. Try: bluegreen -c " + str(the_lab.paths.config) + " exposure; "
        "bluegreen lab down removes the lab.",
        fg="green",
    )


def _demo_campaign(ctx: click.Context, demo_file: Any) -> None:
    """`campaign run FILE --yes` without ending the process on success (for the demo)."""
    from orchestrator.campaign.model import load_campaign

    config = _load(ctx)
    engine, router = _campaign_engine(ctx, config, False, False)
    try:
        result = engine.start(load_campaign(demo_file), demo_file)
    finally:
        router.close()
    if result.exit_code != 0:
        _finish_campaign(result, False)
    click.secho(f"{result.status}: {result.message}", fg="green")
