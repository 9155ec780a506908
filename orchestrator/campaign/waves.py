"""A campaign's waves: the service names of each wave, in order, with group selectors
resolved through the inventory and every name checked against bluegreen.yml."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

from orchestrator.campaign.model import Campaign, GroupSelector
from orchestrator.config.loaded import LoadedConfig
from orchestrator.errors import BadInput, unknown_service
from orchestrator.inventory import Fleet


def resolve_waves(
    campaign: Campaign, config: LoadedConfig, fleet: Fleet | None = None
) -> list[list[str]]:
    """Each wave's service names, in order; group selectors resolved through the inventory
    (`fleet`, the command's parse of it; None: parsed if a group selector needs it). A
    service appears once (in its first wave). Unknown names raise BadInput."""

    @functools.cache
    def inventory() -> Fleet:
        from orchestrator.inventory import load_fleet

        return fleet or load_fleet(config)

    allowed = None
    if campaign.services is not None:
        allowed = set(_resolve_refs(campaign.services, config, inventory, "services"))
    seen: set[str] = set()
    waves: list[list[str]] = []
    for i, wave in enumerate(campaign.waves):
        names = []
        for name in _resolve_refs(wave.services, config, inventory, f"waves[{i}].services"):
            if name in seen or (allowed is not None and name not in allowed):
                continue
            seen.add(name)
            names.append(name)
        waves.append(names)
    if not seen:
        raise BadInput(
            f"campaign {campaign.name}: no service to patch",
            hint="name services under `waves[].services` (and `services:` if set)",
        )
    for adv in campaign.advisories:
        for svc in adv.applies_to or []:
            config.service(svc)
    return waves


def _resolve_refs(refs: list[Any], config: LoadedConfig, inventory: Callable[[], Fleet],
                  where: str) -> list[str]:
    out: list[str] = []
    for ref in refs:
        if isinstance(ref, GroupSelector):
            found = _services_in_group(config, inventory(), ref.group)
            if not found:
                raise BadInput(
                    f"campaign {where}: group {ref.group!r} holds no service of {config.path}",
                    hint="name an inventory group that contains both side groups of a service",
                )
            out += found
        elif ref not in config.services:
            err = unknown_service(config.path, ref, config.services)
            raise BadInput(f"campaign {where}: {err.message}", hint=err.hint)
        else:
            out.append(ref)
    return out


def _services_in_group(config: LoadedConfig, fleet: Fleet, group: str) -> list[str]:
    inside = fleet.groups.get(group)
    if inside is None:
        raise BadInput(
            f"{config.inventory_path}: campaign selects group {group!r}, which is not in the"
            " inventory",
            hint="use a group name from `ansible-inventory --graph`",
        )
    return [
        name
        for name, svc in config.services.items()
        if svc.sides.blue in inside and svc.sides.green in inside
    ]
