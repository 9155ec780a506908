"""The gate must not change the host it judges.

A third-party testinfra file can do anything as root (one seen in the wild appended a new
key to /root/.ssh/authorized_keys on every host it tested). The gate therefore reads each
host's fingerprint (`probes.drift`, with its security part) before its checks and suites
start and again after they all ended, and fails a host whose fingerprint changed in
between, naming what changed. Pure: the reads are the gate's own (`rollout.steps.verify`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from orchestrator.probes.base import CheckResult
from orchestrator.probes.drift import Fingerprint
from orchestrator.probes.security import describe_changes, diff_items

CHECK = "host-unchanged"
"""The gate's row for it, one per host."""


def unchanged_results(
    hosts: Sequence[str],
    before: Mapping[str, Fingerprint],
    after: Mapping[str, Fingerprint],
    errors: Mapping[str, str],
    seconds: float = 0.0,
) -> list[CheckResult]:
    """One row per host: pass when its fingerprint after the gate equals the one before;
    fail naming each change ("the verification itself modified H: authorized_keys of root
    +1 key (SHA256:...)"); error when either read failed (never a pass without data)."""
    out: list[CheckResult] = []
    for host in hosts:
        if host in errors or host not in before or host not in after:
            why = errors.get(host, "no fingerprint")
            out.append(CheckResult(host, CHECK, "error",
                                   f"cannot tell whether the gate changed the host: {why}",
                                   seconds))
            continue
        changes = describe_changes(diff_items(host, before[host].items, after[host].items,
                                              "before the gate"))
        if changes:
            out.append(CheckResult(host, CHECK, "fail",
                                   f"the verification itself modified {host}: "
                                   + "; ".join(changes), seconds))
        else:
            out.append(CheckResult(host, CHECK, "pass", "the gate changed nothing", seconds))
    return out
