"""Prometheus metrics from a `Snapshot`: for `/metrics` and for node_exporter's textfile
collector (`bluegreen metrics --textfile PATH`).

Every family is computed from one snapshot (the store and the router read once), so the
values agree with each other and with the dashboard. Counts come from the audit chain, so
they survive restarts of the server and count every process's changes (CLI, timers,
campaigns), not only this server's.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import datetime

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector, CollectorRegistry

from orchestrator.advisories.measured import URGENCY_WORDS
from orchestrator.sides import SIDES
from orchestrator.web.snapshot import Snapshot, seconds_since

CAMPAIGN_STATES = ("running", "awaiting_approval", "interrupted", "deferred",
                   "converge_pending", "done", "failed", "aborted", "rolled_back")


def families(snap: Snapshot, now: datetime, stale_since: datetime | None = None
             ) -> list[Metric]:
    live = GaugeMetricFamily(
        "bluegreen_live_side", "1 for the side the load balancer sends traffic to, else 0",
        labels=["service", "side"])
    since = GaugeMetricFamily(
        "bluegreen_seconds_since_last_flip",
        "Seconds since traffic last moved (flip, rollout flip or rollback), per audit chain",
        labels=["service"])
    rollbacks = CounterMetricFamily(
        "bluegreen_rollbacks", "Rollbacks recorded in the audit chain (manual and automatic)",
        labels=["service"])
    auto = CounterMetricFamily(
        "bluegreen_automatic_rollbacks",
        "Rollbacks made by a rollout's bake step by itself", labels=["service"])
    failures = CounterMetricFamily(
        "bluegreen_verification_failures",
        "Verifications of a side recorded as failed", labels=["service", "side"])
    deviations = CounterMetricFamily(
        "bluegreen_deviations", "Checks (`watch`, `baseline check`) that found hosts deviating "
        "from the approved baseline, security fingerprint included", labels=["service"])
    state = GaugeMetricFamily(
        "bluegreen_side_state", "1 for the side's current state (untouched, patching, "
        "patched, verified, verify_failed, failed_live, quarantined)",
        labels=["service", "side", "state"])
    share = GaugeMetricFamily(
        "bluegreen_traffic_percent", "Percent of new requests the load balancer sends to the "
        "side (a progressive step: the standby's share; 100 on the live side otherwise)",
        labels=["service", "side"])
    preview = GaugeMetricFamily(
        "bluegreen_preview", "1 when requests with the preview header go to the side "
        "(an exposure of the standby, any percent)", labels=["service", "side"])
    router_ok = GaugeMetricFamily(
        "bluegreen_router_up", "1 when the load balancer answered for this service",
        labels=["service"])
    cves = GaugeMetricFamily(
        "bluegreen_open_cves", "Distinct CVEs open on any host of the side, per urgency, as "
        "the newest `bluegreen exposure` measured them", labels=["service", "side", "urgency"])
    exposed = GaugeMetricFamily(
        "bluegreen_exposed_hosts", "Hosts of the side with an open CVE (any urgency), newest "
        "measurement", labels=["service", "side"])
    unread = GaugeMetricFamily(
        "bluegreen_exposure_unread_hosts", "Hosts the newest measurement could not read (the "
        "CVE counts are then a lower bound)", labels=["service", "side"])
    measured = GaugeMetricFamily(
        "bluegreen_exposure_measured_timestamp_seconds", "When the side's exposure was last "
        "measured (Unix time)", labels=["service", "side"])
    outdated = GaugeMetricFamily(
        "bluegreen_exposure_outdated", "1 when the side was patched after its newest "
        "exposure measurement", labels=["service", "side"])
    for svc in snap.services:
        for side in svc.sides:
            e = side.exposure
            if e is None:
                continue
            labels = [svc.name, side.side]
            for urgency in URGENCY_WORDS:
                cves.add_metric([*labels, urgency], float(e["by_urgency"].get(urgency, 0)))
            exposed.add_metric(labels, float(e["hosts_exposed"]))
            unread.add_metric(labels, float(e["hosts_unread"]))
            measured.add_metric(labels, datetime.fromisoformat(e["measured_at"]).timestamp())
            outdated.add_metric(labels, 1.0 if e["outdated"] else 0.0)
    for svc in snap.services:
        router_ok.add_metric([svc.name], 0.0 if svc.router_error else 1.0)
        for side in svc.sides:
            if svc.live is not None:
                live.add_metric([svc.name, side.side], 1.0 if side.live else 0.0)
                step = svc.step
                exposed_here = step is not None and step["side"] == side.side
                percent = float(step["percent"]) if step is not None else 0.0
                share.add_metric([svc.name, side.side], percent if exposed_here else (
                    100.0 - percent if side.live else 0.0))
                preview.add_metric([svc.name, side.side], 1.0 if exposed_here else 0.0)
            state.add_metric([svc.name, side.side, side.state], 1.0)
        flipped = seconds_since(svc.last_flip_at, now)
        if flipped is not None:
            since.add_metric([svc.name], flipped)
        rollbacks.add_metric([svc.name], float(svc.rollbacks))
        auto.add_metric([svc.name], float(svc.automatic_rollbacks))
        deviations.add_metric([svc.name], float(svc.deviations))
        for side_name in SIDES:
            failures.add_metric([svc.name, side_name],
                                float(svc.verification_failures.get(side_name, 0)))
    campaign = GaugeMetricFamily(
        "bluegreen_campaign_state", "1 for the state of each campaign's newest run",
        labels=["campaign", "state"])
    for camp in snap.campaigns:
        for name in sorted({*CAMPAIGN_STATES, camp.status}):
            campaign.add_metric([camp.name, name], 1.0 if name == camp.status else 0.0)
    audit = GaugeMetricFamily(
        "bluegreen_audit_chain_ok", "1 when every record's hash, MAC and link verify")
    audit.add_metric([], 1.0 if snap.audit.ok else 0.0)
    records = GaugeMetricFamily("bluegreen_audit_records", "Records in the audit chain")
    records.add_metric([], float(snap.audit.count))
    age = GaugeMetricFamily(
        "bluegreen_snapshot_age_seconds",
        "Seconds since the state store was last read (grows while it is busy)")
    age.add_metric([], seconds_since(snap.read_at, now) or 0.0)
    stale = GaugeMetricFamily("bluegreen_snapshot_stale",
                              "1 while the state store could not be read")
    stale.add_metric([], 0.0 if stale_since is None else 1.0)
    return [live, share, preview, since, rollbacks, auto, failures, deviations, state,
            router_ok, campaign,
            audit, records, age, stale, cves, exposed, unread, measured, outdated,
            *_worker_families(snap)]


def _worker_families(snap: Snapshot) -> list[Metric]:
    """Workers per site (issue 24); none for a store without workers (SQLite)."""
    if snap.workers is None:
        return []
    live = GaugeMetricFamily(
        "bluegreen_workers_live", "Live `bluegreen worker` processes of the site (their "
        "database session is there)", labels=["site"])
    queue = GaugeMetricFamily(
        "bluegreen_work_queue", "Services of running campaigns by workers, per site and "
        "queue state", labels=["site", "state"])
    unserved = GaugeMetricFamily(
        "bluegreen_site_unserved", "1 when a campaign by workers waits on the site and no "
        "worker of the site is live", labels=["site"])
    heartbeat = GaugeMetricFamily(
        "bluegreen_workers_heartbeat_age_max_seconds", "Seconds since the stalest live "
        "worker of the site last beat (0 without a live worker)", labels=["site"])
    for site in snap.workers:
        live.add_metric([site.site], float(len(site.workers)))
        for name, count in site.queue.items():
            queue.add_metric([site.site, name], float(count))
        unserved.add_metric([site.site], 1.0 if site.unserved else 0.0)
        heartbeat.add_metric([site.site], max((w.heartbeat_age_s for w in site.workers),
                                              default=0.0))
    return [live, queue, unserved, heartbeat]


class SnapshotCollector(Collector):
    """A collector that reads the newest snapshot each time it is scraped."""

    def __init__(
        self, current: Callable[[], tuple[Snapshot | None, datetime | None]],
        now: Callable[[], datetime],
    ) -> None:
        self._current = current
        self._now = now

    def collect(self) -> Iterator[Metric]:
        snap, stale_since = self._current()
        if snap is None:
            return iter(())
        return iter(families(snap, self._now(), stale_since))


def exposition(collector: Collector) -> bytes:
    """The Prometheus text format of one collector (no process or platform metrics)."""
    from prometheus_client import generate_latest

    registry = CollectorRegistry(auto_describe=False)
    registry.register(collector)
    return generate_latest(registry)
