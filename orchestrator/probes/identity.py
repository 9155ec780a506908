"""Host fingerprints that bind a verification to the hosts it judged.

One command per host, on the probe run's own connection: machine id, boot id and the
sha256 of the dpkg database. Stored with a passing verification; the rollout's flip and
`flip` read them again (one parallel round trip, strict host keys) and refuse a side whose
hosts changed since: rebuilt or re-imaged (machine id, dpkg), rebooted (boot id),
packages installed or removed (dpkg). `rollback` never does this round trip (the incident
path needs only the router and the store).
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence

from orchestrator.errors import VerificationFailed
from orchestrator.probes.base import ProbeTarget
from orchestrator.probes.pool import ConnectionPool, per_host, shared

COMMAND = (
    "cat /etc/machine-id /proc/sys/kernel/random/boot_id && sha256sum /var/lib/dpkg/status"
)
PARTS = {"machine": "machine id", "boot": "boot id", "dpkg": "dpkg database"}
WHY = {
    "machine": "a different machine (rebuilt or replaced)",
    "boot": "rebooted or re-imaged since",
    "dpkg": "packages installed or removed since",
}
DEADLINE_S = 20.0


def parse(output: str) -> str:
    """The command's output as one fingerprint text: `machine=...,boot=...,dpkg=...`."""
    lines = [line.strip() for line in output.splitlines() if line.strip()]
    if len(lines) != 3 or not lines[2].split():
        raise ValueError(f"unexpected fingerprint output: {output[:200]!r}")
    machine, boot, dpkg = lines[0], lines[1], lines[2].split()[0]
    return f"machine={machine},boot={boot},dpkg={dpkg}"


def _parts(fingerprint: str) -> dict[str, str]:
    return dict(part.partition("=")[::2] for part in fingerprint.split(","))


def changes(recorded: str, now: str) -> list[str]:
    """What differs between two fingerprints, in words ("boot id: rebooted or ...")."""
    old, new = _parts(recorded), _parts(now)
    return [f"{PARTS[key]} changed ({WHY[key]})" for key in PARTS if old.get(key) != new.get(key)]


def read_identities(
    targets: Sequence[ProbeTarget],
    *,
    pool: ConnectionPool | None = None,
    deadline_s: float = DEADLINE_S,
) -> tuple[dict[str, str], dict[str, str]]:
    """(host -> fingerprint, host -> why it could not be read), all hosts in parallel."""
    deadline = time.monotonic() + deadline_s
    found: dict[str, str] = {}
    errors: dict[str, str] = {}
    with shared(pool) as connections:

        def read(target: ProbeTarget) -> str:
            conn = connections.get(target, timeout=max(0.5, deadline - time.monotonic()))
            rc, out, err = conn.run(COMMAND, max(0.5, deadline - time.monotonic()))
            if rc != 0:
                raise ValueError(f"exit {rc}: {err.strip()[:200]}")
            return parse(out)

        futures, done = per_host(read, targets, len(targets), deadline)
        for future, target in futures.items():
            if future not in done:
                errors[target.name] = f"no answer within {deadline_s:g} s"
                continue
            try:
                found[target.name] = future.result()
            except Exception as exc:  # noqa: BLE001 - every failure is evidence
                errors[target.name] = f"{type(exc).__name__}: {exc}"
    return found, errors


def recheck(
    service: str, side: str, targets: Sequence[ProbeTarget], recorded: Mapping[str, str]
) -> None:
    """Refuse (VerificationFailed) when the hosts of `side` are not the ones whose
    fingerprints were recorded with its verification: a host added, gone, unreadable, or
    changed (naming the host and what changed)."""
    if not recorded:
        return  # nothing recorded (never verified by this version): the gate decides
    names = {t.name for t in targets}
    problems = [f"{h}: not in the inventory any more" for h in sorted(set(recorded) - names)]
    problems += [f"{h}: not verified (added since)" for h in sorted(names - set(recorded))]
    found, errors = read_identities([t for t in targets if t.name in recorded])
    problems += [f"{h}: cannot be read ({why})" for h, why in sorted(errors.items())]
    for host, now in sorted(found.items()):
        what = changes(recorded[host], now)
        if what:
            problems.append(f"{host}: {'; '.join(what)}")
    if problems:
        raise VerificationFailed(
            f"{service}: refusing to send traffic to {side}: its hosts are not the ones that "
            f"were verified: {'; '.join(problems)}",
            hint=f"verify the side again (`bluegreen verify {service} --side {side}`); a "
            "verification holds only for the hosts it judged",
        )
