"""Whether a failed probe run failed on the hosts or on this machine.

A gate whose every failing host cannot even be connected to for a reason on this machine's
side (host key unknown in our known_hosts, our key refused; or no host at all answers, as
when this machine's network is down) has judged nothing: no check ran on those hosts.
`unreached` connects to each failing host once more (in parallel, one attempt, strict as
always) and returns why, when that is so for all of them; the caller then records an error,
not a verdict (a verified side is not demoted by a broken known_hosts on the orchestrator).
Not such a case: a changed host key (the host's own news), and some hosts unreachable while
others answer (those hosts are down: a verdict, as always).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor

from orchestrator.probes.base import ProbeTarget
from orchestrator.probes.connection import ProbeConnectionError, SSHConnection

CANNOT_CONNECT = ("host-key", "auth", "unreachable")


def _why(target: ProbeTarget) -> str | None:
    """Why `target` cannot be connected from here, or None when it can (or a changed key)."""
    try:
        with SSHConnection(target, attempts=1):
            return None
    except ProbeConnectionError as exc:
        if exc.reason not in CANNOT_CONNECT or "mismatch" in exc.message:
            return None
        return exc.message


def unreached(targets: Sequence[ProbeTarget], failing: Iterable[str]) -> dict[str, str]:
    """{host: why} when every host named in `failing` is one of `targets` that cannot be
    connected from here; {} otherwise (some failure is the hosts' own: a verdict)."""
    names = set(failing)
    chosen = [t for t in targets if t.name in names]
    if not names or len(chosen) != len(names):
        return {}
    with ThreadPoolExecutor(max_workers=min(16, len(chosen))) as pool:
        whys = dict(zip((t.name for t in chosen), pool.map(_why, chosen), strict=True))
    if any(why is None for why in whys.values()):
        return {}
    down = [name for name, why in whys.items() if why is not None and why.startswith(
        "unreachable")]
    if down and names != {t.name for t in targets}:
        return {}  # some hosts answer, these do not: they are down, not our setup
    return {name: why for name, why in whys.items() if why is not None}
