"""`bluegreen init`: a first bluegreen.yml, the adapted load balancer config and the initial
map, from an existing inventory and haproxy.cfg (see orchestrator/onboard/init.py)."""

from __future__ import annotations

from pathlib import Path

import click

from orchestrator.cli.exit import handles_errors
from orchestrator.cli.render import emit_json


@click.command("init")
@click.option("--inventory", "inventory", required=True, metavar="FILE",
              type=click.Path(path_type=Path),
              help="Your Ansible inventory (file or directory); groups NAME_blue/NAME_green "
              "become services.")
@click.option("--haproxy-cfg", "haproxy_cfg", metavar="FILE", type=click.Path(path_type=Path),
              help="The haproxy.cfg your load balancer runs (read only; the adapted copy is "
              "written beside bluegreen.yml).")
@click.option("--service", "services", multiple=True, metavar="NAME=BLUE,GREEN",
              help="A service and its two inventory groups (repeatable; default: every "
              "NAME_blue/NAME_green pair).")
@click.option("--known-hosts", default="~/.ssh/known_hosts", show_default=True,
              help="known_hosts with the hosts' keys (strict checking is always on).")
@click.option("--ssh-user", default=None, help="SSH user for hosts without ansible_user.")
@click.option("--private-key-file", default=None, metavar="PATH",
              help="The SSH key bluegreen (probes and Ansible) logs in with (ssh.private_key_file;"
              " a host's ansible_ssh_private_key_file in the inventory comes first).")
@click.option("--map-file", default=None,
              help="Where HAProxy will read the map (default: bluegreen.map beside "
              "haproxy.cfg).")
@click.option("-o", "--output", default="bluegreen.yml", show_default=True,
              type=click.Path(path_type=Path), help="The bluegreen.yml to write (never over "
              "an existing file).")
@click.option("--json", "as_json", is_flag=True)
@handles_errors
def init(inventory: Path, haproxy_cfg: Path | None, services: tuple[str, ...],
         known_hosts: str, ssh_user: str | None, private_key_file: str | None,
         map_file: str | None, output: Path,
         as_json: bool) -> None:
    """Write a first bluegreen.yml from your inventory and your load balancer's config.

    \b
    Writes, beside -o (and never over an existing file):
      bluegreen.yml            validated; services from your NAME_blue/NAME_green groups
      haproxy.cfg.bluegreen    your haproxy.cfg plus the lines bluegreen needs (# bluegreen)
      bluegreen.map            the initial map: each service on the side that routes today
      bluegreen.percent.map    the exposure maps (empty: progressive steps and preview
      bluegreen.exposed.map    set them at runtime)
    and prints the diff between your haproxy.cfg and the adapted one. Then: install the map
    at its path, review and install the adapted config, reload HAProxy, `bluegreen doctor`.
    Exit 0 written, 2 bad input (nothing written).
    """
    from orchestrator.onboard.init import InitRequest, parse_pair, run_init

    request = InitRequest(
        inventory=inventory, output=output, haproxy_cfg=haproxy_cfg,
        pairs=dict(parse_pair(s) for s in services), known_hosts=known_hosts,
        ssh_user=ssh_user, private_key_file=private_key_file, map_file=map_file,
    )
    result = run_init(request)
    if as_json:
        emit_json(result.as_dict())
        return
    if result.diff:
        click.echo(result.diff.rstrip("\n"))
        click.echo()
    for name, info in result.services.items():
        click.echo(f"service {name}: blue={info['blue']} green={info['green']} "
                   f"live today={info['live'] or '?'} (frontend {info['frontend'] or '?'})")
    for path in result.written:
        click.echo(f"wrote {path}")
    for note in result.notes:
        click.echo(f"note: {note}")
    click.echo("next:")
    if result.map_file:
        click.echo(f"  install -m 644 {output.parent / 'bluegreen.map'} {result.map_file}"
                   "   # before the reload: HAProxy reads it at start")
        for what, target in zip(("percent", "exposed"), result.exposure_maps, strict=False):
            click.echo(f"  install -m 644 {output.parent / f'bluegreen.{what}.map'} {target}")
    if result.adapted_config:
        click.echo(f"  haproxy -c -f {result.adapted_config}   # then install it and reload "
                   "HAProxy")
    click.echo(f"  bluegreen -c {output} doctor")
