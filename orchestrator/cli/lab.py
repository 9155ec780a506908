"""Lab verbs: the local fleet (up, status, down, fault, heal, reset) and the demo."""

from __future__ import annotations

import time
from typing import Any

import click

from orchestrator.cli.exit import handles_errors
from orchestrator.cli.render import emit_json, say


@click.group("lab")
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
@click.option("--state", "state_choice", default="sqlite", show_default=True,
              metavar="sqlite|postgresql|URL",
              help="The lab's state store: its SQLite file, a database of the local "
              "PostgreSQL server (team mode; created if missing), or a postgresql:// URL.")
@click.option("--router", default="haproxy", show_default=True,
              type=click.Choice(["haproxy", "nginx"]),
              help="The load balancer in front of the pools (nginx: bluegreen's nginx router).")
@click.option("--sites", default=0, type=click.IntRange(0, 9), metavar="N",
              help="Share the services between N sites (site1..siteN): per site a network "
              "namespace playing its orchestrator machine (the only place its hosts are "
              "reachable from), its bridge and its HAProxy. Workers need --state postgresql.")
@click.option("--json", "as_json", is_flag=True, help="Print the lab status as JSON.")
@handles_errors
def lab_up(services: str, hosts_per_side: int, state_choice: str, router: str, sites: int,
           as_json: bool) -> None:
    """Build (once) and boot the lab. Idempotent: a second `up` changes nothing."""
    from orchestrator.lab.database import lab_state_url
    from orchestrator.lab.lab import Lab, LabShape

    the_lab = Lab(say=say)
    shape = LabShape(tuple(s.strip() for s in services.split(",") if s.strip()), hosts_per_side,
                     lab_state_url(the_lab.paths, state_choice), router, sites)
    result = the_lab.up(shape)
    if as_json:
        emit_json(
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
    if status.get("haproxy_socket"):
        click.echo(f"  haproxy:      {status['haproxy_socket']}")
    else:
        click.echo(f"  nginx:        {status['nginx_conf']} (bluegreen's file: "
                   f"{status['live_file']})")
    for service, url in status["frontends"].items():
        click.echo(f"  frontend {service}: {url}")
    click.echo(f"  {'HOST':<16} {'SERVICE':<8} {'SIDE':<6} {'ADDRESS':<14} STATE")
    for h in status["hosts"]:
        state = "running" if h["running"] else "STOPPED"
        if h["faults"]:
            state += " faults=" + ",".join(h["faults"])
        click.echo(f"  {h['name']:<16} {h['service']:<8} {h['side']:<6} {h['address']:<14} {state}")
    for site in status.get("sites", []):
        click.echo(f"  {site['name']}: services {','.join(site['services'])}; its machine: "
                   f"ip netns exec {site['netns']} ...; haproxy {site['haproxy_socket']}")
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
        emit_json(status)
    else:
        _print_lab_status(status)


@lab.command("down")
@click.option("--json", "as_json", is_flag=True)
@handles_errors
def lab_down(as_json: bool) -> None:
    """Remove everything the lab made (also after a crashed or half-finished `up`)."""
    from orchestrator.errors import LabError
    from orchestrator.lab.lab import Lab

    result = Lab(say=say).down()
    if as_json:
        emit_json(result)
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

    Lab(say=say).reset(list(hosts) or None)
    click.echo("reset: " + (", ".join(hosts) or "all hosts"))


@lab.command("reimage")
@click.argument("hosts", nargs=-1, required=True)
@handles_errors
def lab_reimage(hosts: tuple[str, ...]) -> None:
    """Give lab hosts a fresh root and nothing else (traffic and state stay): the lab's
    re-imaging for `bluegreen rebuild` (playbooks/lab-rebuild.yml)."""
    from orchestrator.lab.lab import Lab

    Lab(say=say).reimage(list(hosts))
    click.echo("reimaged: " + ", ".join(hosts))



@lab.command("traffic")
@click.argument("service")
@click.option("--rps", default=20.0, show_default=True, type=click.FloatRange(0.1, 1000),
              help="Requests a second.")
@click.option("--seconds", default=10.0, show_default=True, type=click.FloatRange(0.1, 3600))
@click.option("--path", default="/", show_default=True, help="Path requested.")
@click.option("--json", "as_json", is_flag=True)
@handles_errors
def lab_traffic(service: str, rps: float, seconds: float, path: str, as_json: bool) -> None:
    """User-like traffic through SERVICE's lab frontend (loopback only): GET requests at a
    steady rate, counted by the backend that answered and by status class, with latency."""
    from orchestrator.errors import BadInput
    from orchestrator.lab.lab import Lab
    from orchestrator.lab.traffic import send

    frontends = Lab().status()["frontends"]
    if service not in frontends:
        raise BadInput(f"no lab service {service!r}",
                       hint=f"use one of: {', '.join(sorted(frontends))}")
    report = send(frontends[service].rstrip("/") + "/" + path.lstrip("/"), rps, seconds)
    doc = report.as_dict()
    if as_json:
        emit_json(doc)
        return
    click.echo(f"{service}: {report.sent} requests in {report.seconds:.1f}s, "
               f"{report.failed} without an answer; latency p50 {doc['latency_ms']['p50']} ms"
               f", p95 {doc['latency_ms']['p95']} ms")
    for backend, classes in doc["by_backend"].items():
        counted = ", ".join(f"{n} {cls}" for cls, n in sorted(classes.items()))
        click.echo(f"  {backend:<16} {counted}")


@lab.command("demo")
@click.option("--service", default="web", show_default=True)
@click.pass_context
@handles_errors
def lab_demo(ctx: click.Context, service: str) -> None:
    """The whole job on the lab: lab up, the real CVEs open on it, a campaign made from them
    (`campaign new`) run over both services (patch the standby, verify, flip, bake), the
    CVEs closed on the live sides, a rollback on command (exposed again), audit check, the
    evidence report and its OpenVEX form. Safe to run again."""

    from orchestrator.cli.advisories import show_exposure
    from orchestrator.cli.audit import audit_verify, history
    from orchestrator.cli.campaign import demo_campaign, new_campaign, report_cmd
    from orchestrator.cli.context import witness_now
    from orchestrator.cli.traffic import rollback, status
    from orchestrator.errors import BadInput
    from orchestrator.lab.lab import Lab

    def banner(text: str) -> None:
        click.secho(f"\n=== {text}", fg="magenta", bold=True)

    the_lab = Lab(say=say)
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
    show_exposure(ctx, None, None, (), "high", False, False)
    banner("2b. a bad patch (demo-web 1.1.2: 500 on about 3 % of requests; health and "
           "the gate pass) under user traffic, baked as steps (bluegreen.yml: 20 %, 50 %, "
           "then the flip) judged on Prometheus against the twin: caught at the first "
           "step, rolled back, with the evidence")
    with _users(the_lab) as users:
        _bad_patch_caught(ctx)
    _served(users)
    ctx.invoke(status, service="web", adopt=False, reason=None, as_json=False)
    the_lab.reset(["web-green-1", "web-green-2"])  # fresh roots for the campaign
    banner("3. a campaign from what is open at or above high (`campaign new`): one advisory per "
           "package and fixed version")
    demo_file = the_lab.paths.root / "campaigns" / f"security-demo-{int(time.time())}.yml"
    made = new_campaign(ctx, (), "high", "web,api", "security-demo", False, str(demo_file),
                        False)
    if made is None:
        raise BadInput("nothing is open on the lab: no campaign to run",
                       hint="`bluegreen lab down`, then run the demo again for fresh hosts")
    banner(f"4. campaign {demo_file.name}: web, then api: patch each standby, verify "
           "(versions, nothing runs replaced libraries), then web's steps under user "
           "traffic (api: flip, bake)")
    with _users(the_lab) as users:
        demo_campaign(ctx, demo_file)
    _served(users)
    ctx.invoke(status, service=None, adopt=False, reason=None, as_json=False)
    banner("5. after: the live sides are clean; the old sides (standby, no traffic) still "
           "exposed")
    show_exposure(ctx, None, None, (), "high", False, False, brief=True)
    banner(f"6. incident! roll {service} back in one flip: {service} is exposed again")
    ctx.invoke(
        rollback, service=service, reason="INC-4711 demo incident", to_side=None, as_json=False
    )
    show_exposure(ctx, service, None, (), "high", False, False, brief=True)
    banner("7. the audit trail, and its hash chain verified")
    # the head is witnessed when a command ends; the demo is one long command: now
    witness_now()
    ctx.invoke(history, service=None, limit=20, as_json=False)
    ctx.invoke(audit_verify, as_json=False)
    banner("8. the evidence: per host each advisory's CVEs before / after / now, probe results, "
           "flips, rollbacks (Markdown, and HTML to open in a browser); and the same as OpenVEX")
    ctx.invoke(report_cmd, campaign_name="security-demo", fmt="md", output=None, as_json=False)
    ctx.invoke(report_cmd, campaign_name="security-demo", fmt="html", output=None, as_json=False)
    ctx.invoke(report_cmd, campaign_name="security-demo", fmt="openvex", output=None,
               as_json=False)
    click.secho(
        "\ndemo done. Try: bluegreen -c " + str(the_lab.paths.config) + " exposure; "
        "bluegreen -c " + str(the_lab.paths.config) + " serve (the dashboard shows the "
        "exposure just measured); bluegreen lab down removes the lab.",
        fg="green",
    )


def _users(the_lab: Any) -> Any:
    """User-like traffic through web's frontend beside a rollout (60 requests a second, at
    most 5 minutes): what web's steps are judged on (no traffic never passes)."""
    from orchestrator.lab.traffic import background

    return background(the_lab.status()["frontends"]["web"] + "/", 60, 300)


def _served(users: Any) -> None:
    click.echo(f"users' requests to web while it ran ({users.sent}, {users.failed} without "
               "an answer), by the backend that answered:")
    for backend, classes in sorted(users.by_backend.items()):
        click.echo(f"  {backend:<16} " + ", ".join(f"{n} {c}" for c, n in
                                                   sorted(classes.items())))


def _bad_patch_caught(ctx: click.Context) -> None:
    """`bluegreen rollout web --package demo-web=1.1.2` (while users' traffic runs): exit 4
    expected (rolled back at the first step)."""
    from orchestrator.cli.rollout import rollout
    from orchestrator.errors import LabError

    try:
        ctx.invoke(rollout, service="web", packages=("demo-openssl=3.0.15-1",
                                                     "demo-web=1.1.2"),
                   reason="demo: a bad patch", yes=True, as_json=False)
    except SystemExit as exc:
        if exc.code != 4:
            raise
        return
    raise LabError("demo-web 1.1.2 was promoted: the bake's steps did not catch it",
                   hint="check web's `bake.steps` and `bake.analysis` in the lab's "
                        "bluegreen.yml (`bluegreen lab down`, then `lab up` writes them)")
