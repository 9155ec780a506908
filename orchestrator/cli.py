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

EXIT_CODES = """\b
Exit codes:
  0  done
  1  error (router, state store, Ansible, lab)
  2  bad usage or bad input (config, inventory, campaign file, arguments); nothing changed
  3  verification failed; traffic not moved
  4  rolled back automatically during bake
  5  lock held by another run
  6  outside the maintenance window / deferred"""

F = TypeVar("F", bound=Callable[..., Any])


def _emit_json(doc: Any) -> None:
    click.echo(json.dumps(doc, indent=2, sort_keys=False, default=str))


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
@click.option("--hosts-per-side", default=2, show_default=True, type=click.IntRange(1, 16))
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
    from orchestrator.config import load_config

    return load_config(ctx.obj.config_path)


def _actor(ctx: click.Context) -> str:
    from orchestrator.traffic import default_actor

    return default_actor(ctx.obj.actor)


@main.command()
@click.argument("service")
@click.option("--reason", required=True, help="Why (incident id); goes to the audit chain.")
@click.option(
    "--to",
    "to_side",
    type=click.Choice(["blue", "green"]),
    help="Side to send traffic to (default: the side that is not live).",
)
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
@handles_errors
def rollback(
    ctx: click.Context, service: str, reason: str, to_side: str | None, as_json: bool
) -> None:
    """Send SERVICE's traffic back to its other side, now.

    No Ansible, no probes: checks the target side has a server UP at the load balancer,
    flips, persists, audits. Works while a rollout holds the lock (that run is aborted).
    """
    from orchestrator.traffic import flip, open_router, open_store, parse_side

    config = _load(ctx)
    config.service(service)
    store, router = open_store(config), open_router(config)
    try:
        out = flip(
            config,
            store,
            router,
            service,
            to=parse_side(to_side),
            reason=reason,
            actor=_actor(ctx),
            command="rollback",
            require_verified=False,
        )
    finally:
        router.close()
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
        click.echo(f"{service}: {out.to_side} is already live; nothing changed")


@main.command()
@click.argument("service")
@click.option("--to", "to_side", type=click.Choice(["blue", "green"]), required=True)
@click.option("--reason", required=True, help="Why; goes to the audit chain.")
@click.option(
    "--force", is_flag=True, help="Flip even if the side is not verified after its patch."
)
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
@handles_errors
def flip(
    ctx: click.Context, service: str, to_side: str, reason: str, force: bool, as_json: bool
) -> None:
    """Manually move SERVICE's traffic to a side (gated on its verification)."""
    from orchestrator.traffic import flip as do_flip
    from orchestrator.traffic import open_router, open_store, parse_side

    config = _load(ctx)
    config.service(service)
    store, router = open_store(config), open_router(config)
    try:
        out = do_flip(
            config,
            store,
            router,
            service,
            to=parse_side(to_side),
            reason=reason,
            actor=_actor(ctx),
            command="flip" + (" --force" if force else ""),
            require_verified=not force,
            force=force,
        )
    finally:
        router.close()
    if as_json:
        _emit_json(out.as_dict())
    else:
        click.echo(
            f"{service}: {out.from_side} -> {out.to_side}"
            if out.changed
            else f"{service}: {out.to_side} is already live; nothing changed"
        )


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
    """Live side (from the router), standby, patch level and verification of each side."""
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
        click.echo(f"{r.service}: live={r.live} standby={r.standby}{warn}")
        for side, info in r.sides.items():
            verified = (
                "verified"
                if info["verified_after_patch"]
                else "NOT verified"
                if info["verified_at"]
                else "never verified"
            )
            click.echo(f"  {side:<6} patch={info['patch_level'] or '-'}  {verified}")
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
    from orchestrator.config import parse_package_arg

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
        pending = [r for r in store.list_runs(status="running") if r.kind == "rollout"]
        if not pending:
            click.echo("nothing to resume")
            return
        run = pending[-1]
    if run.status not in ("running", "deferred"):
        raise BadInput(f"run {run.run_id} already ended ({run.status})", hint="start a new rollout")
    _run_rollout(ctx, config, as_json, lambda r: r.resume(run))


def _run_rollout(ctx: click.Context, config: Any, as_json: bool, go: Callable[[Any], Any]) -> None:
    from orchestrator.errors import BluegreenError as BGE
    from orchestrator.rollout import Rollout
    from orchestrator.traffic import open_router, open_store

    store, router = open_store(config), open_router(config)

    def show(ev: Any) -> None:
        if as_json:
            return
        if ev.phase == "begin":
            click.secho(f"[{ev.step}] ...", fg="cyan", err=True)
        elif ev.phase == "end":
            click.secho(f"[{ev.step}] {ev.message}", fg="green", err=True)
        else:
            click.echo(f"    {ev.message}", err=True)

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


@main.command()
@click.argument("service")
@click.option("--side", type=click.Choice(["blue", "green"]), help="Default: the standby side.")
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
@handles_errors
def verify(ctx: click.Context, service: str, side: str | None, as_json: bool) -> None:
    """Run the verification gate on a side: a table host x check; exit 3 on any failure."""
    from orchestrator.errors import VerificationFailed
    from orchestrator.sides import other_side
    from orchestrator.traffic import open_router, open_store, parse_side
    from orchestrator.verification import verify_side

    config = _load(ctx)
    config.service(service)
    target = parse_side(side)
    store = open_store(config)
    if target is None:
        router = open_router(config)
        try:
            target = other_side(router.live(service))
        finally:
            router.close()
    out = verify_side(config, store, service, target, actor=_actor(ctx))
    if as_json:
        _emit_json(
            {
                "service": service,
                "side": target,
                "ok": out.ok,
                "summary": out.summary,
                "results": [
                    {"host": r.host, "check": r.check, "status": r.status, "evidence": r.evidence}
                    for r in out.report.results
                ],
            }
        )
    else:
        click.echo(f"{service} {target}: {out.summary}")
        for r in out.report.results:
            mark = (
                click.style("pass", fg="green")
                if r.status == "pass"
                else click.style(r.status, fg="red")
            )
            line = f"  {r.host:<16} {r.check:<40} {mark}"
            if r.status != "pass":
                line += f"  {r.evidence}"
            click.echo(line)
    if not out.ok:
        if as_json:
            sys.exit(VerificationFailed.exit_code)
        raise VerificationFailed(f"{service} {target}: verification failed")


@main.command()
@click.argument("service", required=False)
@click.option("--limit", default=50, show_default=True, type=click.IntRange(1, 100000))
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
@handles_errors
def history(ctx: click.Context, service: str | None, limit: int, as_json: bool) -> None:
    """The audit trail: who changed what, when, why, and the result."""
    from orchestrator.traffic import open_store

    config = _load(ctx)
    records = open_store(config).audit_records(service=service, limit=limit)
    if as_json:
        _emit_json([r.model_dump(mode="json") for r in records])
        return
    for r in records:
        click.echo(
            f"{r.seq:>5} {r.at:%Y-%m-%d %H:%M:%S} {r.actor:<10} {r.command:<24} "
            f"{r.service or '-':<8} {r.result:<10} {r.reason or ''}"
        )


@main.group()
def audit() -> None:
    """The tamper-evident audit chain."""


@audit.command("verify")
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
@handles_errors
def audit_verify(ctx: click.Context, as_json: bool) -> None:
    """Check every record's hash and link; exit 1 if the chain is broken."""
    from orchestrator.errors import AuditBroken
    from orchestrator.traffic import open_store

    report = open_store(_load(ctx)).verify_audit()
    if as_json:
        _emit_json(
            {
                "ok": report.ok,
                "count": report.count,
                "head_hash": report.head_hash,
                "problem": report.problem,
                "bad_seq": report.bad_seq,
            }
        )
        if not report.ok:
            sys.exit(AuditBroken.exit_code)
        return
    if not report.ok:
        raise AuditBroken(
            f"audit chain broken at record {report.bad_seq}: {report.problem}",
            hint="restore the state file from a backup; investigate who edited it",
        )
    click.echo(f"audit chain ok: {report.count} records, head {report.head_hash}")


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


@lab.command("demo")
@click.option("--service", default="web", show_default=True)
@click.pass_context
@handles_errors
def lab_demo(ctx: click.Context, service: str) -> None:
    """The whole job on the lab: lab up, patch the standby, verify, flip, bake,
    roll back on command, audit check and a report. Safe to run again."""
    from orchestrator.lab.lab import Lab

    def banner(text: str) -> None:
        click.secho(f"\n=== {text}", fg="magenta", bold=True)

    the_lab = Lab(say=_say)
    banner("1. the lab: real Debian hosts (nspawn + sshd), HAProxy, a lab apt repository")
    was_up = the_lab.load() is not None
    ctx.invoke(lab_up, services="web,api", hosts_per_side=2, as_json=False)
    if was_up:
        banner("   (lab was already up: resetting hosts, traffic and state for a clean demo)")
        the_lab.reset()
        import shutil

        shutil.rmtree(the_lab.paths.root / "state", ignore_errors=True)
    ctx.obj.config_path = str(the_lab.paths.config)
    banner("2. before: who is live, what is installed")
    ctx.invoke(status, service=None, adopt=False, reason=None, as_json=False)
    banner(
        f"3. rollout {service}: patch the standby (demo-openssl CVE-2026-0001 fix), verify, "
        "flip, bake under traffic"
    )
    ctx.invoke(
        rollout, service=service, packages=(), reason="DEMO-2026-0001", yes=True, as_json=False
    )
    ctx.invoke(status, service=service, adopt=False, reason=None, as_json=False)
    banner(f"4. incident! roll {service} back in one flip")
    ctx.invoke(
        rollback, service=service, reason="INC-4711 demo incident", to_side=None, as_json=False
    )
    ctx.invoke(status, service=service, adopt=False, reason=None, as_json=False)
    banner("5. the audit trail, and its hash chain verified")
    ctx.invoke(history, service=None, limit=20, as_json=False)
    ctx.invoke(audit_verify, as_json=False)
    click.secho(
        "\ndemo done. Try: bluegreen -c " + str(the_lab.paths.config) + " status; "
        "bluegreen lab down removes the lab.",
        fg="green",
    )
