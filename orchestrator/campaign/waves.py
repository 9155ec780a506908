"""A campaign's waves: the service names of each wave, in order, with group selectors
resolved through the inventory and every name checked against bluegreen.yml."""

from __future__ import annotations

from typing import Any

from orchestrator.campaign.model import Campaign, GroupSelector
from orchestrator.config.loaded import LoadedConfig
from orchestrator.errors import BadInput, unknown_service


def resolve_waves(campaign: Campaign, config: LoadedConfig) -> list[list[str]]:
    """Each wave's service names, in order; group selectors resolved through the inventory.
    A service appears once (in its first wave). Unknown names raise BadInput."""
    allowed = None
    if campaign.services is not None:
        allowed = set(_resolve_refs(campaign.services, config, "services"))
    seen: set[str] = set()
    waves: list[list[str]] = []
    for i, wave in enumerate(campaign.waves):
        names = []
        for name in _resolve_refs(wave.services, config, f"waves[{i}].services"):
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


def _resolve_refs(refs: list[Any], config: LoadedConfig, where: str) -> list[str]:
    out: list[str] = []
    for ref in refs:
        if isinstance(ref, GroupSelector):
            found = _services_in_group(config, ref.group)
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


def _services_in_group(config: LoadedConfig, group: str) -> list[str]:
    from orchestrator.inventory import _parse, captured_output

    with captured_output() as captured:
        inventory, *_ = _parse(config.inventory_path, captured)
    top = inventory.groups.get(group)
    if top is None:
        raise BadInput(
            f"{config.inventory_path}: campaign selects group {group!r}, which is not in the"
            " inventory",
            hint="use a group name from `ansible-inventory --graph`",
        )
    inside = {group} | {g.name for g in top.get_descendants()}
    return [
        name
        for name, svc in config.services.items()
        if svc.sides.blue in inside and svc.sides.green in inside
    ]
