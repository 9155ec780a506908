"""`campaign plan`: what a run would do, per service; computed without changing anything."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from orchestrator.campaign.model import Campaign, advisories_for, packages_for
from orchestrator.campaign.waves import resolve_waves
from orchestrator.config.loaded import LoadedConfig
from orchestrator.routers.base import Router
from orchestrator.schedule.window import WindowState, window_state
from orchestrator.sides import Side, other_side


@dataclass(frozen=True)
class PlannedService:
    service: str
    wave: int
    live: Side
    standby: Side
    hosts: list[str]
    """The standby's hosts: the ones the run would patch."""
    packages: list[str]
    advisories: list[str]
    changes: dict[str, dict[str, str]] | None = None
    """With `check`: per host, package -> "current -> new" (Ansible check mode)."""

    def as_dict(self) -> dict[str, Any]:
        doc: dict[str, Any] = {
            "service": self.service,
            "wave": self.wave,
            "live": self.live,
            "standby": self.standby,
            "hosts": self.hosts,
            "packages": self.packages,
            "advisories": self.advisories,
        }
        if self.changes is not None:
            doc["changes"] = self.changes
        return doc


@dataclass(frozen=True)
class CampaignPlan:
    campaign: Campaign
    waves: list[list[str]]
    window: WindowState
    services: list[PlannedService] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        campaign = self.campaign
        return {
            "campaign": campaign.name,
            "advisories": [
                {"id": a.id, "cves": a.cves, "severity": a.severity, "packages": a.packages}
                for a in campaign.advisories
            ],
            "waves": [
                {
                    "wave": i + 1,
                    "services": names,
                    "max_parallel": campaign.waves[i].max_parallel,
                    "on_failure": campaign.waves[i].on_failure,
                }
                for i, names in enumerate(self.waves)
            ],
            "services": [s.as_dict() for s in self.services],
            "window": {"timezone": campaign.window.timezone, **self.window.as_dict()},
            "approval": campaign.approval.model_dump(),
            "retention": {
                "keep_seconds": campaign.retention.keep.total_seconds(),
                "converge": campaign.retention.converge,
            },
            "webhooks": len(campaign.notify.webhooks),
        }


def plan_campaign(
    config: LoadedConfig,
    router: Router,
    campaign: Campaign,
    *,
    check: bool = False,
    now: datetime | None = None,
) -> CampaignPlan:
    """What a run would do, per service; changes nothing. `check` asks Ansible (check mode)
    which packages would really change on each standby host (slower)."""
    from orchestrator.inventory import load_fleet

    fleet = load_fleet(config)  # once for the command
    waves = resolve_waves(campaign, config, fleet)
    services = []
    for wi, names in enumerate(waves):
        for svc in names:
            live = router.live(svc)
            standby = other_side(live)
            pkgs = packages_for(campaign, svc)
            changes = None
            if check:
                from orchestrator.patching import patch_hosts

                res = patch_hosts(config, svc, standby, pkgs, check_mode=True,
                                  fleet=fleet)
                changes = {
                    h: {n: f"{c.current or '-'} -> {c.new}" for n, c in r.would_change.items()}
                    for h, r in res.hosts.items()
                }
            services.append(
                PlannedService(
                    service=svc,
                    wave=wi + 1,
                    live=live,
                    standby=standby,
                    hosts=[h.name for h in fleet.service(svc).side(standby)],
                    packages=[str(p) for p in pkgs],
                    advisories=[a.id for a in advisories_for(campaign, svc)],
                    changes=changes,
                )
            )
    state = window_state(campaign.window, now or datetime.now(UTC))
    return CampaignPlan(campaign, waves, state, services)
