"""Did a failed patch change nothing? Conservative: `why_untouched` answers only when both
witnesses of a run agree that no host of the side was changed, else None (the side then
stays `patching`).

A host counts as untouched when Ansible ran no task to completion on it (no ok result, no
ignored failure, no result marked changed) and it either
- was never reached (the play ended before it),
- failed its first task because sudo refused before the module started (a password
  required, an unknown become user), or
- was unreachable, and bluegreen's own package read after the playbook could not reach it
  either (or read the same packages as before);
and where its package database was read before and after, no package changed.

The run must have ended by itself (status `failed`): a timed-out or cancelled run may have
been stopped inside a task, whose result never came.
"""

from __future__ import annotations

from collections.abc import Sequence

from orchestrator.patching.results import HostPatchResult
from orchestrator.patching.step import SidePatch


def why_untouched(patched: SidePatch, hosts: Sequence[str]) -> str | None:
    """Why no host of `hosts` (the side's) was changed by the failed run, or None when that
    is not certain."""
    result = patched.result
    if result.ok or result.status != "failed" or not hosts:
        return None
    if set(result.hosts) != set(hosts):
        return None  # a host of the side without a result, or the play touched another one
    reasons: dict[str, list[str]] = {}
    for name in sorted(hosts):
        why = _host_untouched(name, result.hosts[name], patched)
        if why is None:
            return None
        reasons.setdefault(why, []).append(name)
    return "; ".join(f"{', '.join(names)}: {why}" for why, names in reasons.items())


def _host_untouched(name: str, host: HostPatchResult, patched: SidePatch) -> str | None:
    if host.changed or host.ran:
        return None
    deltas = patched.changes.hosts.get(name)
    if deltas:  # read before and after: packages changed
        return None
    compared = deltas is not None
    if not host.reached:
        return "the play never reached it"
    if host.escalation_refused and not host.unreachable:
        return "sudo refused before any task ran"
    if host.unreachable and (compared or name not in patched.changes.after):
        return "unreachable before any task ran"
    return None
