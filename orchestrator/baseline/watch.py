"""Watch the live side against its approved baseline (`bluegreen watch`, `baseline check`).

One round: read the fingerprint (security part included) of every host of the side the
router says is live, compare it with the approved baseline (`baseline.approved`), and on a
deviation report it everywhere an operator looks: an audit record (command `deviation`,
which `/metrics` counts as `bluegreen_deviations_total`), a webhook event `deviation` to
the service's `watch.webhooks`, and the caller's exit code. A host that cannot be read is
a deviation too (never "all clear" without data). With `quarantine`, a deviation of a kind
the service's `watch.quarantine_on` names quarantines the live side by itself
(`traffic.quarantine`: traffic moves to the other side only if it is verified).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

from orchestrator.config.loaded import LoadedConfig
from orchestrator.errors import BluegreenError
from orchestrator.probes.drift import DriftReport
from orchestrator.sides import Side
from orchestrator.state.models import AuditEntryInput
from orchestrator.traffic.quarantine import QuarantineOutcome

DEVIATION = "deviation"
MAX_FINDINGS = 50
"""Findings kept per host in the audit record and the webhook (the report has them all)."""


@dataclass(frozen=True)
class WatchRound:
    """One comparison of a side with the approved baseline, and what was done about it."""

    service: str
    side: Side | None
    """None: both sides (`baseline check --side both`)."""
    baseline: Path
    report: DriftReport
    at: datetime
    findings: dict[str, list[str]] = field(default_factory=dict)
    """Per host, what deviates, in words (`authorized_keys of root +1 key (SHA256:...)`)."""
    audit_seq: int | None = None
    quarantine: QuarantineOutcome | None = None
    quarantine_error: str | None = None
    """Why the live side could not be quarantined (e.g. the other side is not verified)."""

    @property
    def deviation(self) -> bool:
        return not self.report.ok

    def as_dict(self) -> dict[str, Any]:
        return {
            "service": self.service, "side": self.side, "baseline": str(self.baseline),
            "at": self.at.isoformat(), "deviation": self.deviation, "findings": self.findings,
            "audit_seq": self.audit_seq,
            "quarantine": self.quarantine.as_dict() if self.quarantine else None,
            "quarantine_error": self.quarantine_error,
            **self.report.as_dict(),
        }


def findings_in_words(report: DriftReport) -> dict[str, list[str]]:
    from orchestrator.probes.security import describe_changes

    out = {host: [f"cannot be read: {why}"] for host, why in sorted(report.errors.items())}
    for host, diffs in report.by_host().items():
        if diffs:
            out.setdefault(host, []).extend(describe_changes(diffs))
    return out


def quarantine_kinds(report: DriftReport, kinds: list[str]) -> list[str]:
    """The kinds among the deviations that the config says quarantine the side."""
    return sorted({d.kind for d in report.differences} & set(kinds))


def check_round(
    config: LoadedConfig,
    service: str,
    *,
    actor: str,
    side: Side | Literal["live"] | None = "live",
    path: str | None = None,
    quarantine: bool = False,
    notify: Callable[[str, dict[str, Any]], None] | None = None,
    by: str = "watch",
) -> WatchRound:
    """Compare SERVICE's `side` ("live": as the router says; None: both sides) with its
    approved baseline, and on a deviation: audit, notify, and (with `quarantine`, for a
    kind in `watch.quarantine_on`) quarantine the live side. `notify(event, data)`: the
    webhook sender (default: one for the service's `watch.webhooks`, drained before we
    return). Raises BadInput (baseline file, service), RouterError, StateError."""
    from orchestrator.baseline.approved import baseline_path, check_baseline, read_baseline
    from orchestrator.traffic import open_router, open_store

    settings = config.service(service).watch
    read_baseline(baseline_path(config, service, path))  # bad input before anything else
    chosen: Side | None
    if side == "live":
        router = open_router(config)
        try:
            chosen = router.live(service)
        finally:
            router.close()
    else:
        chosen = side
    source, report = check_baseline(config, service, chosen, path)
    at = datetime.now(UTC)
    if report.ok:
        return WatchRound(service, chosen, source, report, at)
    findings = findings_in_words(report)
    kept = {h: words[:MAX_FINDINGS] for h, words in findings.items()}
    store = open_store(config)
    try:
        record = store.audit_append(AuditEntryInput(
            actor=actor, command=DEVIATION, service=service, result=DEVIATION,
            reason=f"{by}: hosts differ from the approved baseline {source.name}",
            after={"side": chosen or "both", "baseline": str(source), "by": by,
                   "findings": kept, "differences": len(report.differences),
                   "unreadable": sorted(report.errors)},
        ))
    finally:
        store.close()
    _send(config, service, notify, {"service": service, "side": chosen or "both",
                                    "baseline": str(source), "findings": kept,
                                    "audit_seq": record.seq, "by": by})
    outcome: QuarantineOutcome | None = None
    error: str | None = None
    kinds = quarantine_kinds(report, list(settings.quarantine_on))
    if quarantine and kinds and chosen is not None:
        outcome, error = _quarantine(config, service, chosen, actor, kinds, findings)
    return WatchRound(service, chosen, source, report, at, findings, record.seq, outcome, error)


def _send(config: LoadedConfig, service: str,
          notify: Callable[[str, dict[str, Any]], None] | None, data: dict[str, Any]) -> None:
    if notify is not None:
        notify(DEVIATION, data)
        return
    urls = list(config.service(service).watch.webhooks)
    if not urls:
        return
    from orchestrator.notify import Notifier

    notifier = Notifier(urls)
    try:
        notifier.send(DEVIATION, **data)
    finally:
        notifier.close()


def _quarantine(config: LoadedConfig, service: str, side: Side, actor: str,
                kinds: list[str], findings: dict[str, list[str]]
                ) -> tuple[QuarantineOutcome | None, str | None]:
    from orchestrator.rollout.tools import host_recheck
    from orchestrator.traffic import open_router, open_store
    from orchestrator.traffic.quarantine import quarantine_side

    first = next((w for words in findings.values() for w in words), "")
    reason = f"watch: deviation from the approved baseline ({', '.join(kinds)}): {first}"
    store, router = open_store(config), open_router(config)
    try:
        return quarantine_side(store, router, service, side, reason[:500], actor,
                               recheck_hosts=host_recheck(config, service)), None
    except BluegreenError as exc:
        return None, exc.message
    finally:
        router.close()
        store.close()


def watch(
    config: LoadedConfig,
    service: str,
    *,
    actor: str,
    interval: float,
    on_round: Callable[[WatchRound], None],
    stop: Callable[[], bool],
    path: str | None = None,
    quarantine: bool = False,
    sleep: Callable[[float], None] = time.sleep,
) -> int:
    """Rounds every `interval` seconds until `stop()` says so: the number of rounds that
    found a deviation. A round that fails (router, store) is reported by raising."""
    deviations = 0
    while not stop():
        started = time.monotonic()
        result = check_round(config, service, actor=actor, path=path, quarantine=quarantine)
        deviations += result.deviation
        on_round(result)
        while not stop() and time.monotonic() - started < interval:
            sleep(min(0.5, max(0.0, interval - (time.monotonic() - started))))
    return deviations
