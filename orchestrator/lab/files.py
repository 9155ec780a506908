"""Files the lab writes for its users: ssh_config, known_hosts, inventory, bluegreen.yml."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import yaml

from orchestrator.lab.hosts import HostSpec
from orchestrator.lab.packages import FIXED_OPENSSL
from orchestrator.lab.paths import REPO_PORT, LabPaths
from orchestrator.lab.sites import SiteState, config_sites, ports, site_of, site_paths


def ssh_config(paths: LabPaths, hosts: Sequence[HostSpec]) -> str:
    blocks = [f"# written by `bluegreen lab up`; use: ssh -F {paths.ssh_config} HOST\n"]
    for h in hosts:
        blocks.append(
            f"Host {h.name}\n"
            f"    HostName {h.address}\n"
            "    User root\n"
            f"    IdentityFile {paths.client_key}\n"
            "    IdentitiesOnly yes\n"
            f"    UserKnownHostsFile {paths.known_hosts}\n"
            "    GlobalKnownHostsFile /dev/null\n"
            "    StrictHostKeyChecking yes\n"
            "    BatchMode yes\n"
            "    ConnectTimeout 5\n"
        )
    return "\n".join(blocks)


def known_hosts(hosts: Sequence[HostSpec], pubkeys: dict[str, str]) -> str:
    lines = []
    for h in hosts:
        kind, blob = pubkeys[h.name].split()[:2]
        lines.append(f"{h.name},{h.address} {kind} {blob}")
    return "\n".join(lines) + "\n"


def inventory(paths: LabPaths, services: Sequence[str], hosts: Sequence[HostSpec]) -> str:
    children: dict[str, object] = {}
    for service in services:
        sides = {}
        for side in ("blue", "green"):
            sides[f"{service}_{side}"] = {
                "hosts": {
                    h.name: {"ansible_host": h.address}
                    for h in hosts
                    if h.service == service and h.side == side
                }
            }
        children[service] = {"children": sides}
    doc = {
        "all": {
            "vars": {
                "ansible_user": "root",
                "ansible_python_interpreter": "/usr/bin/python3",
                "ansible_ssh_private_key_file": str(paths.client_key),
                "ansible_ssh_common_args": (
                    f"-o UserKnownHostsFile={paths.known_hosts} "
                    "-o StrictHostKeyChecking=yes -o GlobalKnownHostsFile=/dev/null"
                ),
            },
            "children": children,
        }
    }
    return "# written by `bluegreen lab up`\n" + yaml.safe_dump(doc, sort_keys=False)


def _router(paths: LabPaths, services: Sequence[str], kind: str) -> dict[str, object]:
    if kind == "nginx":
        from orchestrator.lab import nginx

        frontends = {s: f"http://127.0.0.1:{port}" for s, port in ports(paths, services).items()}
        return {"kind": "nginx", "live_file": str(nginx.live_file(paths)),
                "conf": str(nginx.conf(paths)), "frontends": frontends,
                "access_log": str(nginx.access_log(paths)), "drain_seconds": 5}
    return haproxy_router(paths, ports(paths, services))


def haproxy_router(paths: LabPaths, ports: Mapping[str, int]) -> dict[str, object]:
    """`router:` of the lab's HAProxy (or of a site's: `paths` under its directory)."""
    frontends = {s: f"http://127.0.0.1:{port}" for s, port in ports.items()}
    return {
        "kind": "haproxy",
        "socket": f"unix://{paths.haproxy_socket}",
        "map_file": str(paths.map_file),
        "percent_map_file": str(paths.percent_map_file),
        "exposed_map_file": str(paths.exposed_map_file),
        "server_state_file": str(paths.server_state_file),
        "frontends": frontends,
        "drain_seconds": 5,
    }


def plain_bake() -> dict[str, object]:
    """`bake:` without steps: the flip, then 10 s watched (api's; web's without steps)."""
    return {"seconds": 10, "interval_seconds": 0.2, "url_path": "/", "max_failures": 3}


STEPS_SERVICE = "web"
"""The lab service whose bluegreen.yml bake is steps (a lab with HAProxy: its Prometheus)."""
LAB_STEPS = [{"percent": 20, "seconds": 10}, {"percent": 50, "seconds": 6},
             {"percent": 100, "seconds": 3}]
"""The lab's bake as steps (seconds, not minutes): 1.1.2's 500s (one in 33 requests per
host) show within the first step at the traffic `lab demo` and the tests send."""


def bake_steps(paths: LabPaths) -> dict[str, object]:
    """`bake:` of web in the lab's bluegreen.yml: steps judged on the lab's Prometheus.
    `seconds` (today's bake, unused beside steps) is the plain bake's, so a copy without
    `steps` and `analysis` is the plain bake (tests/support/lab.py `no_steps`)."""
    from orchestrator.lab.metrics import url

    return {**plain_bake(), "steps": LAB_STEPS,
            # HAProxy 2.6's latency is its average over the side's last 1024 responses:
            # with the few of a first step, a handful of slow ones right after the patch
            # restarted demo-web weigh; 1.1.3's +300 ms is well over a 200 ms floor
            "analysis": {"source": url(paths), "min_volume": 20, "interval_seconds": 1,
                         "metrics": {"latency_seconds": {"floor": 0.2}},
                         "inconclusive_limit": 3, "inconclusive_seconds": 6,
                         "on_inconclusive": "rollback"}}


def bluegreen_config(paths: LabPaths, services: Sequence[str],
                     state_url: str | None = None, *, router: str = "haproxy",
                     sites: Sequence[SiteState] = ()) -> str:
    """`sites`: the lab's sites (`lab up --sites`): `sites:` and each service's `site:`;
    the top-level router is site1's."""
    own = {s: port for s, port in ports(paths, services).items() if s in sites[0].services} \
        if sites else {}
    top = haproxy_router(site_paths(paths, sites[0]), own) if sites \
        else _router(paths, services, router)
    doc = {
        "version": 1,
        "inventory": str(paths.inventory),
        "ssh": {
            "user": "root",
            "private_key_file": str(paths.client_key),
            "known_hosts": str(paths.known_hosts),
            "ssh_config": str(paths.ssh_config),
        },
        "state": ({"url": state_url} if state_url
                  else {"path": str(paths.root / "state" / "state.db")}),
        "audit": {
            "key_file": str(paths.audit_key),
            # no syslog here (this machine kind has none); the tests add a collector
            "witness": {"syslog": "off", "file": str(paths.witness_file)},
        },
        "reports_dir": str(paths.root / "reports"),
        "router": top,
        **({"sites": config_sites(paths, sites, haproxy_router, services)} if sites else {}),
        "services": {
            s: {
                **({"site": site.name} if (site := site_of(sites, s)) else {}),
                "sides": {"blue": f"{s}_blue", "green": f"{s}_green"},
                "patch": {
                    "packages": [
                        {"name": "demo-openssl", "version": FIXED_OPENSSL},
                        {"name": "demo-web", "version": "1.0.1"},
                    ],
                    "serial": "50%",
                    "max_fail_percentage": 0,
                    # `bluegreen rebuild`: a fresh root from the lab's image
                    "rebuild_playbook": "playbooks/lab-rebuild.yml",
                },
                "health": [{"url": "http://{host}:8080/health", "expect_status": 200}],
                "fixed_versions": {"demo-openssl": FIXED_OPENSSL},
                "bake": plain_bake(),
            }
            for s in services
        },
        # `exposure`, `campaign new`: the CVEs named by the changelogs of what the lab
        # repository offers (real Debian security updates + the demo advisory)
        "advisories": {
            "repositories": [
                f"http://{paths.gateway}:{REPO_PORT}/bookworm-security ./",
                f"http://{paths.gateway}:{REPO_PORT}/stable ./",
            ],
            # the lab repository is signed with the lab's own key (`repokey`): verified
            # as a real mirror is, with this keyring instead of Debian's
            "keyring": str(paths.repo_keyring),
            "feeds": [{"kind": "changelog"}],
            "release": "bookworm",
            "min_urgency": "low",
        },
    }
    if router == "haproxy" and not sites and STEPS_SERVICE in services:  # its Prometheus
        # judges (a lab of several sites has none)
        doc["services"][STEPS_SERVICE]["bake"] = bake_steps(paths)  # type: ignore[index]
    return "# written by `bluegreen lab up`\n" + yaml.safe_dump(doc, sort_keys=False)


def has_steps(config: Path) -> bool:
    """Whether a lab's bluegreen.yml bakes web as steps, as `lab up` writes it (a lab
    without web has none to have; an unreadable file has not)."""
    try:
        doc = yaml.safe_load(config.read_text())
        web = doc["services"].get(STEPS_SERVICE)
        return web is None or bool(web["bake"].get("steps"))
    except (OSError, yaml.YAMLError, KeyError, TypeError, AttributeError):
        return False
