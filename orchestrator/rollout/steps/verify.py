"""Verify one side of a service with the gate's checks, and record the result per side.

The gate is: the built-in checks (`probes.gate.gate_checks`), the service's user suites
(plain pytest-testinfra files), and drift against the other side (`probes.drift`) when the
service's `drift.mode` is "fail" ("warn": reported, does not fail; "off": not run).

One gate run is one probe run: checks, in-process suites and drift share one strict SSH
connection per host (`probes.pool.ConnectionPool`), opened on first use and closed when the
run ends, also on errors. Every user suite runs through pytest in this process
(`probes.suites.run_suite`), on those same connections.

The gate changes nothing on the hosts it judges: each host's fingerprint (security part
included) is read once before the checks and suites start (drift compares it with the
other side's, read while they run) and once after they ended; a host whose fingerprint changed in between fails
(`probes.side_effects`, check `host-unchanged`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from orchestrator.config.loaded import LoadedConfig
from orchestrator.config.models import PackageSpec
from orchestrator.errors import VerificationFailed
from orchestrator.probes.base import CheckResult, ProbeReport, ProbeTarget
from orchestrator.rollout.context import RunContext
from orchestrator.rollout.records import CheckEvidence, VerifyRecord
from orchestrator.rollout.unjudged import refuse_unjudged
from orchestrator.sides import Side, other_side
from orchestrator.state.base import StateStore
from orchestrator.state.models import AuditEntryInput
from orchestrator.trust import check_trusted

if TYPE_CHECKING:
    from orchestrator.inventory import Fleet
    from orchestrator.probes.drift import DriftReport, Fingerprint
    from orchestrator.probes.pool import ConnectionPool

DEFAULT_DEADLINE_S = 120.0


@dataclass(frozen=True)
class VerifyOutcome:
    service: str
    side: Side
    ok: bool
    summary: str
    report: ProbeReport
    drift: DriftReport | None = None
    warnings: list[str] = field(default_factory=list)
    generation: int | None = None
    """The side's generation the recorded verdict left (None: not recorded): what a flip
    relying on this verification passes (`FlipRequest.verified_generation`)."""


def patched_package_names(
    config: LoadedConfig, service: str, packages: Sequence[PackageSpec] = ()
) -> list[str] | None:
    """Package names the patch may change (None: any, for `security_updates: true`)."""
    patch = config.service(service).patch
    if patch.security_updates and not packages:
        return None
    return sorted({p.name for p in (*patch.packages, *packages)})


def side_drift(
    config: LoadedConfig,
    service: str,
    side: Side,
    *,
    packages: Sequence[PackageSpec] = (),
    deadline_s: float = DEFAULT_DEADLINE_S,
    pool: ConnectionPool | None = None,
    fleet: Fleet | None = None,
) -> DriftReport:
    """`side` against the other side of `service` (and each side within itself).

    `pool`: the run's connections (default: one per host of both sides, closed at the end).
    `fleet`: the command's parse of the inventory (None: parse it).
    """
    import time

    from orchestrator.probes.drift import read_fingerprints

    started = time.monotonic()
    mine, theirs = _both_sides(config, service, side, fleet)
    settings = config.service(service).drift
    fps, errors = read_fingerprints([*mine, *theirs], settings.files, deadline_s, pool=pool,
                                    security=settings.security)
    return _drift_report(config, service, mine, theirs, fps, errors, packages, started)


def _both_sides(
    config: LoadedConfig, service: str, side: Side, fleet: Fleet | None
) -> tuple[list[ProbeTarget], list[ProbeTarget]]:
    """The targets of `side` and of the other side. `fleet`: the command's parse of the
    inventory (None: parse it)."""
    from orchestrator.inventory import load_fleet
    from orchestrator.probes.gate import targets_for

    pools = (fleet or load_fleet(config)).service(service)
    return (targets_for(config, pools.side(side)),
            targets_for(config, pools.side(other_side(side))))


def _drift_report(
    config: LoadedConfig,
    service: str,
    mine: Sequence[ProbeTarget],
    theirs: Sequence[ProbeTarget],
    fps: Mapping[str, Fingerprint],
    errors: Mapping[str, str],
    packages: Sequence[PackageSpec],
    started: float,
) -> DriftReport:
    from orchestrator.probes.drift import compare_sides, timed_report

    names = {t.name for t in mine}
    diffs = compare_sides(
        {h: fp for h, fp in fps.items() if h in names},
        {h: fp for h, fp in fps.items() if h not in names},
        patched_packages=patched_package_names(config, service, packages),
    )
    hosts = [t.name for t in (*mine, *theirs)]
    return timed_report(hosts, started, diffs, dict(errors))


def _suite_report(
    suite: str, targets: Sequence[ProbeTarget], deadline_s: float, pool: ConnectionPool
) -> ProbeReport:
    from orchestrator.probes.suites import run_suite

    return run_suite(suite, targets, deadline_s, pool=pool)  # pytest in-process, our connections


def run_gate(
    config: LoadedConfig,
    service: str,
    side: Side,
    *,
    packages: Sequence[PackageSpec] = (),
    advisories: Sequence[dict[str, Any]] = (),
    deadline_s: float = DEFAULT_DEADLINE_S,
    fingerprints: dict[str, str] | None = None,
    fleet: Fleet | None = None,
) -> tuple[ProbeReport, DriftReport | None, list[str]]:
    """Checks, suites and drift of one side, run concurrently over one connection per host:
    (report, drift, warnings). `fingerprints`, when given, is filled with each host's
    fingerprint (`probes.identity`), read on the same connections; a host whose
    fingerprint cannot be read fails the gate."""
    import time

    from orchestrator.probes.drift import read_fingerprints
    from orchestrator.probes.engine import run_checks
    from orchestrator.probes.gate import gate_checks
    from orchestrator.probes.identity import read_identities
    from orchestrator.probes.pool import ConnectionPool
    from orchestrator.probes.side_effects import unchanged_results

    svc = config.service(service)
    for suite in svc.suites:  # code: refused before anything runs when others can change it
        check_trusted(config.resolve(suite), "suite")
    checks = gate_checks(config, service, packages, advisories)
    targets, theirs = _both_sides(config, service, side, fleet)
    if svc.drift.mode == "off":
        theirs = []
    started_at = time.time()
    t0 = time.monotonic()
    with (
        ConnectionPool() as connections,
        ThreadPoolExecutor(max_workers=3 + len(svc.suites)) as pool,
    ):
        # One fingerprint per host of the side before anything runs on it: the one read
        # after the checks and suites must equal it (the gate changes nothing on the host
        # it judges), and drift compares it with the other side's, read meanwhile.
        before, before_errors = read_fingerprints(
            targets, svc.drift.files, deadline_s, pool=connections,
            security=svc.drift.security)
        theirs_f = pool.submit(read_fingerprints, theirs, svc.drift.files, deadline_s,
                               pool=connections, security=svc.drift.security)
        checks_f = pool.submit(run_checks, targets, checks, deadline_s, pool=connections)
        suite_fs = [
            pool.submit(_suite_report, str(config.resolve(s)), targets, deadline_s, connections)
            for s in svc.suites
        ]
        identity_f = (
            pool.submit(read_identities, targets, pool=connections)
            if fingerprints is not None
            else None
        )
        reports = [checks_f.result(), *(f.result() for f in suite_fs)]
        their_fps, their_errors = theirs_f.result()
        identities = identity_f.result() if identity_f is not None else ({}, {})
        after, after_errors = read_fingerprints(
            targets, svc.drift.files, deadline_s, pool=connections, security=svc.drift.security)
    drift = (
        _drift_report(config, service, targets, theirs, {**before, **their_fps},
                      {**before_errors, **their_errors}, packages, t0)
        if svc.drift.mode != "off"
        else None
    )
    results: list[CheckResult] = [r for rep in reports for r in rep.results]
    if fingerprints is not None:
        fingerprints.update(identities[0])
        results += [CheckResult(h, "host-fingerprint", "error", f"cannot read the host's "
                                f"fingerprint: {why}") for h, why in identities[1].items()]
    results += unchanged_results([t.name for t in targets], before, after,
                                 {**after_errors, **before_errors})
    warnings: list[str] = []
    if drift is not None:
        names = [t.name for t in targets]
        # the side's hosts always get a drift row; the other side's only when they differ
        others = [h for h in drift.hosts if h not in names and not _clean(drift, h)]
        rows = drift.results([*names, *others])
        if svc.drift.mode == "fail":
            results += rows
        else:
            warnings += [f"{r.host} drift: {r.evidence}" for r in rows if r.status != "pass"]
    report = ProbeReport(results, started_at, time.monotonic() - t0, tuple(t.name for t in targets))
    return report, drift, warnings


MAX_RECORDED_FAILURES = 50


def _failures(report: ProbeReport) -> list[dict[str, str]]:
    """The failed results with their evidence, for the audit record: a gate that failed
    ends its rollout before the journal could keep them, and reports show them."""
    return [
        {"host": r.host, "check": r.check, "status": r.status, "evidence": r.evidence[:300]}
        for r in report.failures[:MAX_RECORDED_FAILURES]
    ]


def _clean(drift: DriftReport, host: str) -> bool:
    return host not in drift.errors and not any(d.host == host for d in drift.differences)


def verify_side(
    config: LoadedConfig,
    store: StateStore,
    service: str,
    side: Side,
    *,
    actor: str,
    packages: Sequence[PackageSpec] = (),
    advisories: Sequence[dict[str, Any]] = (),
    patch_level: str | None = None,
    deadline_s: float = DEFAULT_DEADLINE_S,
    record: bool = True,
    expected_generation: int | None = None,
    fleet: Fleet | None = None,
) -> VerifyOutcome:
    """Run the gate on `side` and record the verdict with the level and the side's
    generation read when it began (`expected_generation`, else read now): if the side
    changed meanwhile (a patch began, a rollback), the verdict is not recorded
    (StateError). A pass stores the hosts' fingerprints with it."""
    from orchestrator.probes.gate import summarize

    current = store.get_side(service, side)
    generation = (
        expected_generation
        if expected_generation is not None
        else (current.generation if current else 0)
    )
    level = patch_level if patch_level is not None else (current.patch_level if current else None)
    fingerprints: dict[str, str] = {}
    report, drift, warnings = run_gate(
        config, service, side, packages=packages, advisories=advisories, deadline_s=deadline_s,
        fingerprints=fingerprints, fleet=fleet,
    )
    summary = summarize(report)
    if not report.ok:  # every failing host unreachable from here: an error, never a verdict
        refuse_unjudged(store, service, side, report,
                        [t for ts in _both_sides(config, service, side, fleet) for t in ts],
                        actor=actor, record=record)
    recorded = None
    if record:
        recorded = store.record_verification(
            service,
            side,
            report.ok,
            level,
            summary,
            audit=AuditEntryInput(
                actor=actor,
                command="verify",
                service=service,
                after={"side": side, "ok": report.ok, "summary": summary,
                       "failures": _failures(report)},
            ),
            hosts=fingerprints if report.ok else None,
            expected_generation=generation,
        )
    return VerifyOutcome(service, side, report.ok, summary, report, drift, warnings,
                         recorded.generation if recorded is not None else None)


class Verify:
    """The rollout's verify step: the gate on the patched standby, at the level installed,
    for the side's generation when it began; a failure stops the run before any flip. It
    journals the generation and level it verified: the flip (also after a resume) passes
    them to the kernel, which refuses a side that changed since."""

    name = "verify"

    def resume(self, ctx: RunContext, ended: Mapping[str, Any]) -> None:
        generation = ended.get("generation")
        if isinstance(generation, int):
            ctx.verified_generation = generation
        else:  # journaled before verifications named their generation: nothing to bind the
            ctx.run_again.add(self.name)  # flip to, so verify again (unless it flipped)

    def run(self, ctx: RunContext) -> VerifyRecord:
        service, standby = ctx.service, ctx.standing_plan.standby
        began = ctx.store.get_side(service, standby)  # the generation the verdict is for
        outcome = (ctx.tools.verify or verify_side)(
            ctx.config, ctx.store, service, standby, actor=ctx.actor, packages=ctx.packages,
            advisories=ctx.advisories, patch_level=ctx.level,
            expected_generation=began.generation if began else 0, fleet=ctx.fleet,
        )
        if not outcome.ok:
            raise VerificationFailed(
                f"{service}: {standby} failed verification: {outcome.summary}",
                hint=f"see `bluegreen verify {service} --side {standby}`; traffic was not moved",
            )
        ctx.verified_generation = outcome.generation
        return VerifyRecord(
            standby, outcome.summary, len(outcome.report.results),
            tuple(CheckEvidence(r.host, r.check, r.status, r.evidence[:300])  # for reports
                  for r in outcome.report.results),
            generation=outcome.generation, level=ctx.level,
        )
