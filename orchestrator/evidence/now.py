"""CVE evidence of a campaign run: per host, each advisory's CVEs before the patch, after
it, and NOW (read from the hosts at report time), and whether the live side is exposed.

An advisory is `fixed` on a host when every package it names that the host has is at or
above its fixed version (Debian's rules), `open` when one is below, `not_installed` when
the host has none of its packages. `now` is read over strict SSH from every host of both
sides when the report is made, so a service rolled back to its unpatched side shows as
exposed again, in words and in the JSON.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from orchestrator.advisories import versions

if TYPE_CHECKING:
    from orchestrator.config.loaded import LoadedConfig
    from orchestrator.routers.base import Router

Versions = Mapping[str, str]


def advisory_status(packages: Mapping[str, str], installed: Versions | None) -> str:
    """open | fixed | not_installed | unknown (no data, or the host could not be read)."""
    if installed is None or "error" in installed:
        return "unknown"
    present = {p: installed[p] for p in packages if installed.get(p)}
    if not present:
        return "not_installed"
    for name, have in present.items():
        if not versions.readable(have) or versions.older(have, packages[name]):
            return "open"
    return "fixed"


def read_now(
    config: LoadedConfig, router: Router, services: Sequence[str], packages: Mapping[str, list[str]]
) -> dict[str, Any]:
    """Per service: the live side (router) and every host's versions of the campaign's
    packages, read now (a host that cannot be read says why)."""
    from orchestrator.errors import BluegreenError
    from orchestrator.inventory import load_fleet
    from orchestrator.probes.gate import targets_for
    from orchestrator.probes.pool import ConnectionPool

    fleet = load_fleet(config)
    out: dict[str, Any] = {}
    jobs = []
    for svc in services:
        live: str | None = None
        problem = None
        try:
            live = router.live(svc)
        except BluegreenError as exc:
            problem = exc.message
        hosts: dict[str, Any] = {}
        out[svc] = {"live": live, "at": datetime.now(UTC).isoformat(), "hosts": hosts,
                    "router_error": problem}
        for side in ("blue", "green"):
            for t in targets_for(config, fleet.service(svc).side(side)):
                hosts[t.name] = {"side": side}
                jobs.append((t, hosts[t.name], packages.get(svc, [])))

    def read(job: tuple[Any, dict[str, Any], list[str]]) -> None:
        target, slot, names = job
        try:
            conn = pool.get(target, timeout=20)
            _rc, text, _err = conn.run(
                "dpkg-query -W -f '${Package} ${Version}\\n' " + " ".join(names), 20
            )
            slot["versions"] = dict(
                line.split(" ", 1) for line in text.splitlines() if " " in line
            )
        except BluegreenError as exc:
            slot["versions"] = {"error": exc.message}

    with ConnectionPool() as pool, ThreadPoolExecutor(max_workers=16) as ex:
        list(ex.map(read, jobs))
    return out


def cve_evidence(
    advisories: list[dict[str, Any]],
    hosts: Mapping[str, Mapping[str, Versions]],
    now: Mapping[str, Any] | None,
    service: str,
    rolled_back: bool,
) -> dict[str, Any]:
    """The `cves` section of one service in the report."""
    mine = [a for a in advisories if not a.get("applies_to") or service in a["applies_to"]]
    names = sorted({h for h in hosts} | set((now or {}).get("hosts", {})))
    per_host: dict[str, Any] = {}
    for host in names:
        recorded = hosts.get(host, {})
        read = (now or {}).get("hosts", {}).get(host, {})
        per_host[host] = {
            "side": read.get("side"),
            "versions_now": read.get("versions"),
            "advisories": [
                {
                    "id": a["id"],
                    "cves": list(a.get("cves", [])),
                    "packages": dict(a["packages"]),
                    "before": advisory_status(a["packages"], recorded.get("before"))
                    if host in hosts else None,
                    "after": advisory_status(a["packages"], recorded.get("after"))
                    if host in hosts else None,
                    "now": advisory_status(a["packages"], read.get("versions"))
                    if now else "unknown",
                }
                for a in mine
            ],
        }
    live = (now or {}).get("live")
    live_open = sorted(
        {
            cve
            for h in per_host.values()
            if h["side"] == live
            for a in h["advisories"]
            if a["now"] == "open"
            for cve in a["cves"]
        }
    )
    unread = sorted(
        host for host, h in per_host.items()
        if h["side"] == live and any(a["now"] == "unknown" for a in h["advisories"])
    )
    total = sorted({c for a in mine for c in a.get("cves", [])})
    if now is None or live is None:
        words = f"{service}: exposure now unknown (hosts or router not read)"
        exposed = None
    elif live_open:
        again = " again (rolled back to the unpatched side)" if rolled_back else ""
        words = (
            f"{service}: EXPOSED{again}: live side {live} has {len(live_open)} of the "
            f"campaign's {len(total)} CVEs open"
        )
        exposed = True
    elif unread:
        words = f"{service}: exposure now unknown: live hosts not read: {', '.join(unread)}"
        exposed = None
    else:
        other = "green" if live == "blue" else "blue"
        left = sorted(
            {c for h in per_host.values() if h["side"] == other for a in h["advisories"]
             if a["now"] == "open" for c in a["cves"]}
        )
        tail = f" (standby {other} still has {len(left)} open: no traffic)" if left else ""
        words = f"{service}: closed: live side {live} has none of the {len(total)} CVEs open{tail}"
        exposed = False
    return {
        "now": {
            "at": (now or {}).get("at"),
            "live": live,
            "exposed": exposed,
            "open_on_live": live_open,
            "unread_live_hosts": unread,
            "words": words,
        },
        "hosts": per_host,
    }
