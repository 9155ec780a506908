"""`lab up --sites N`: the lab's services shared between N sites (`site1` ... `siteN`), each
its own orchestrator machine's reach.

A site is a network namespace (`bglabK-siteI`) that plays the site's orchestrator machine:
the site's bridge lives INSIDE it (with the lab gateway's address, so the hosts keep
their /etc/hosts and repository URL), and so does the site's apt repository server. The
root namespace has no route to any site's hosts, and one site's namespace none to another
site's: a site's hosts are reachable only from its namespace, where its worker runs
(`ip netns exec bglabK-siteI bluegreen worker --site siteI`).

Each site has its own HAProxy, run in the root namespace: its backends' servers (and
health checks) connect from the site's namespace (HAProxy's `namespace` keyword), and each
frontend listens twice, on the root namespace's loopback (for tests and users) and on the
site namespace's (for the site's worker: bake traffic). Its admin socket is a file under
the site's directory, like the PostgreSQL server's unix socket, which is how a worker in a
site namespace reaches the shared store.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace

from orchestrator.errors import LabError
from orchestrator.lab import balancer, waits
from orchestrator.lab.hosts import HostSpec
from orchestrator.lab.net import call_in_netns
from orchestrator.lab.paths import REPO_PORT, LabPaths
from orchestrator.lab.proc import alive, run

MAX_SITES = 9
SITE_BRIDGE = "br0"
"""The site's bridge, inside the site's namespace (so no name clashes between sites)."""


@dataclass
class SiteState:
    """One site of a running lab (saved in lab.json)."""

    name: str
    services: list[str]
    netns: str
    haproxy_pid: int = 0
    repo_pid: int = 0


def plan(paths: LabPaths, services: Sequence[str], count: int) -> list[SiteState]:
    """`count` sites sharing `services` round-robin (web -> site1, api -> site2, ...)."""
    names = [f"site{i + 1}" for i in range(count)]
    return [SiteState(name, [s for i, s in enumerate(services) if i % count == n],
                      f"{paths.netns_prefix}{name}") for n, name in enumerate(names)]


def site_paths(paths: LabPaths, site: SiteState) -> LabPaths:
    """The site's own files (its HAProxy's config, sockets and maps, its logs, its
    inventory): the lab's layout under <lab>/sites/<site>."""
    return replace(paths, root=paths.root / "sites" / site.name)


def site_of(sites: Sequence[SiteState], service: str) -> SiteState | None:
    return next((s for s in sites if service in s.services), None)


def link_of(sites: Sequence[SiteState], service: str) -> tuple[str, str] | None:
    """(namespace, bridge) where the veths of `service`'s hosts go (None: no sites)."""
    site = site_of(sites, service)
    return (site.netns, SITE_BRIDGE) if site else None


def start_net(paths: LabPaths, site: SiteState) -> int:
    """The site's namespace and bridge, and its repository server (its pid)."""
    create_net(paths, site)
    return start_repo(paths, site)


def create_net(paths: LabPaths, site: SiteState) -> None:
    """The site's namespace and, inside it, its bridge with the lab gateway's address."""
    ns = site.netns
    run(["ip", "netns", "add", ns])
    run(["ip", "-n", ns, "link", "set", "lo", "up"])
    run(["ip", "-n", ns, "link", "add", SITE_BRIDGE, "type", "bridge"])
    run(["ip", "-n", ns, "addr", "add", f"{paths.gateway}/24", "dev", SITE_BRIDGE])
    run(["ip", "-n", ns, "link", "set", SITE_BRIDGE, "up"])


def start_repo(paths: LabPaths, site: SiteState) -> int:
    """The lab apt repository, served inside the site's namespace on the gateway address."""
    log = paths.logs / f"repo-{site.name}.log"
    with open(log, "ab") as out:
        proc = subprocess.Popen(
            ["ip", "netns", "exec", site.netns, sys.executable, "-m", "http.server",
             "--bind", paths.gateway, "--directory", str(paths.repo), str(REPO_PORT)],
            stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    waits.wait(lambda: call_in_netns(site.netns, lambda: waits.tcp_open(paths.gateway,
                                                                         REPO_PORT)),
               10, f"{site.name}'s apt repository to listen", f"see {log}")
    return proc.pid


def ports(paths: LabPaths, services: Sequence[str]) -> dict[str, int]:
    """Each service's frontend port (the lab's numbering over all its services)."""
    return {s: balancer.frontend_port(paths, i) for i, s in enumerate(services)}


def start_balancer(paths: LabPaths, site: SiteState, all_services: Sequence[str],
                   specs: Sequence[HostSpec]) -> int:
    own = site_paths(paths, site)
    wanted = ports(paths, all_services)
    balancer.write_files(own, site.services, specs,
                         ports={s: wanted[s] for s in site.services}, netns=site.netns)
    (own.haproxy / "bluegreen.map").chmod(0o644)
    pid = balancer.start(own)
    wait_balancers(paths, [site], specs)
    return pid


def wait_balancers(paths: LabPaths, sites: Sequence[SiteState],
                   specs: Sequence[HostSpec]) -> None:
    """Until each site's HAProxy sees every host of its site UP."""
    for site in sites:
        balancer.wait_up(site_paths(paths, site),
                         sum(1 for h in specs if h.service in site.services))


def reachable(netns: str, address: str, port: int) -> bool:
    """Whether `address:port` answers a TCP connect from `netns`."""
    return call_in_netns(netns, lambda: waits.tcp_open(address, port))


def problems(sites: Sequence[SiteState]) -> list[str]:
    found = []
    for site in sites:
        if not alive(site.haproxy_pid):
            found.append(f"{site.name}'s haproxy is not running")
        if not alive(site.repo_pid):
            found.append(f"{site.name}'s apt repository server is not running")
        if not os.path.exists(f"/run/netns/{site.netns}"):
            found.append(f"{site.name}'s network namespace {site.netns} is gone")
    return found


def status(paths: LabPaths, sites: Sequence[SiteState]) -> list[dict[str, object]]:
    """`lab status`'s `sites`: per site its services, namespace and load balancer."""
    return [{"name": s.name, "services": list(s.services), "netns": s.netns,
             "inventory": str(site_paths(paths, s).inventory),
             "haproxy_socket": str(site_paths(paths, s).haproxy_socket),
             "map_file": str(site_paths(paths, s).map_file)} for s in sites]


def check_shape(count: int, services: Sequence[str], router: str) -> str | None:
    """Why `--sites count` cannot be (None when it can)."""
    if not 1 <= count <= MAX_SITES:
        return f"--sites {count}: use 1..{MAX_SITES}"
    if count > len(services):
        return (f"--sites {count}: more sites than services ({len(services)}); every site "
                "needs a service")
    if router != "haproxy":
        return "--sites: the lab's sites use HAProxy (leave out --router nginx)"
    return None


def config_sites(paths: LabPaths, sites: Sequence[SiteState],
                 router: Callable[[LabPaths, Mapping[str, int]], dict[str, object]],
                 all_services: Sequence[str]) -> dict[str, object]:
    """bluegreen.yml's `sites:` (each site's inventory and router; site1's router is
    also the top-level one, so commands run by hand on its services work as before)."""
    wanted = ports(paths, all_services)
    out: dict[str, object] = {}
    for site in sites:
        own = site_paths(paths, site)
        doc: dict[str, object] = {"inventory": str(own.inventory)}
        if site is not sites[0]:
            doc["router"] = router(own, {s: wanted[s] for s in site.services})
        out[site.name] = doc
    return out


def processes(paths: LabPaths) -> list[int]:
    """What runs inside the lab's site namespaces (workers started on a site's "machine",
    their Ansible): `lab down` ends them with the machine they ran on."""
    listed = json.loads(run(["ip", "-j", "netns", "list"], check=False).stdout or "[]")
    found: list[int] = []
    for name in (n.get("name", "") for n in listed):
        if re.fullmatch(re.escape(paths.netns_prefix) + r"site\d+", name):
            pids = run(["ip", "netns", "pids", name], check=False).stdout.split()
            found += [int(p) for p in pids if p.isdigit()]
    return found


def require_none(sites: Sequence[SiteState], what: str) -> None:
    """Lab verbs not built for sites refuse clearly."""
    if sites:
        raise LabError(f"lab {what} is not supported on a lab with sites",
                       hint="run `bluegreen lab down` and `bluegreen lab up` without --sites")
