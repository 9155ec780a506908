"""The verification gate: which checks a side must pass before traffic may move to it.

Built from the service's config: its HTTP health checks, the fixed versions (from config,
advisories and the packages of this patch, compared on the host with dpkg's rules), any
declared `checks:`, and always `stale-processes` (a patch installed but not in effect fails).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from orchestrator.config.loaded import LoadedConfig
from orchestrator.config.models import PackageSpec
from orchestrator.inventory import Host
from orchestrator.probes.base import ProbeReport, ProbeTarget
from orchestrator.probes.checks import Check, parse_checks


def targets_for(config: LoadedConfig, hosts: Sequence[Host]) -> list[ProbeTarget]:
    key = config.private_key_path
    return [
        ProbeTarget(
            name=h.name,
            address=h.address,
            known_hosts=str(config.known_hosts_path),
            port=h.port,
            user=h.user,
            key_file=h.key_file or (str(key) if key else None),  # the host's first, as Ansible
            connect_timeout=config.model.ssh.connect_timeout,
            max_output=config.model.ssh.max_output_mb * 2**20,
            become=config.model.ssh.become,
        )
        for h in hosts
    ]


def gate_checks(
    config: LoadedConfig,
    service: str,
    packages: Sequence[PackageSpec] = (),
    advisories: Sequence[dict[str, Any]] = (),
) -> list[Check]:
    svc = config.service(service)
    declared: list[dict[str, Any]] = []
    for hc in svc.health:
        item: dict[str, Any] = {
            "kind": "http",
            "url": hc.url,
            "expect_status": hc.expect_status,
            "max_latency_ms": hc.max_latency_ms,
        }
        if hc.body_contains:
            item["body_contains"] = hc.body_contains
        declared.append(item)
    fixed: dict[str, dict[str, Any]] = {}
    for name, version in svc.fixed_versions.items():
        fixed[name] = {"kind": "package", "name": name, "fixed": version}
    for pkg in packages:
        if pkg.version:
            fixed[pkg.name] = {"kind": "package", "name": pkg.name, "fixed": pkg.version}
    for adv in advisories:
        for name, version in adv.get("packages", {}).items():
            fixed[name] = {
                "kind": "package",
                "name": name,
                "fixed": version,
                "advisory": adv.get("id"),
                "cves": list(adv.get("cves", [])),
            }
    # A declared `package` check (e.g. with its advisory and CVEs) has the same id as the
    # bare fixed version of that package: the declared one wins, one row per package.
    for item in svc.checks:
        if item.get("kind") == "package" and not item.get("id"):
            fixed.pop(str(item.get("name")), None)
    declared += list(fixed.values())
    declared += svc.checks
    if not any(c.get("kind") == "stale-processes" for c in svc.checks):
        declared.append({"kind": "stale-processes"})
    checks = parse_checks(declared, source=f"{config.path.name}: services.{service}.checks")
    for check in checks:
        check.configure(config)
    return checks


def summarize(report: ProbeReport) -> str:
    failures = report.failures
    total = len(report.results)
    if report.ok:
        return f"{total} checks passed on {len(report.hosts)} hosts"
    head = "; ".join(f"{r.host} {r.check}: {r.evidence}" for r in failures[:5])
    more = f" (+{len(failures) - 5} more)" if len(failures) > 5 else ""
    return f"{len(failures)} of {total} checks failed: {head}{more}"
