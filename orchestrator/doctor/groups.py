"""Each side's inventory group as `load_fleet` needs it: present, with hosts. `status` shows
what is wrong beside the live side (a typo in `services.NAME.sides`, a group left empty),
where `load_fleet` would refuse the first one only when a command needs the hosts; `doctor`
reports the same per side instead of stopping at the first."""

from __future__ import annotations

import difflib
from collections.abc import Sequence
from pathlib import Path

from orchestrator.config.loaded import LoadedConfig
from orchestrator.errors import BadInput
from orchestrator.sides import SIDES, Side


def side_group_problems(config: LoadedConfig,
                        services: Sequence[str]) -> dict[str, dict[Side, str]]:
    """service -> side -> what is wrong with its inventory group, for the sides of
    `services` that have a problem (each service read from its site's inventory). An
    inventory that cannot be read gives each of its sides that error."""
    from orchestrator.inventory import inventory_groups

    found: dict[str, dict[Side, str]] = {}
    read: dict[Path, dict[str, int] | BadInput] = {}  # each inventory parsed once
    for service in services:
        inventory = config.for_site(config.site_of(service)).inventory_path
        if inventory not in read:
            try:
                read[inventory] = inventory_groups(inventory)
            except BadInput as exc:
                read[inventory] = exc
        groups = read[inventory]
        if isinstance(groups, BadInput):
            found[service] = dict.fromkeys(SIDES, f"{groups.message} (fix: {groups.hint})")
            continue
        for side in SIDES:
            name: str = getattr(config.service(service).sides, side)
            field = f"services.{service}.sides.{side}"
            if name not in groups:
                close = difflib.get_close_matches(name, sorted(groups), n=1)
                hint = f" — did you mean {close[0]!r}?" if close else ""
                found.setdefault(service, {})[side] = (
                    f"inventory group {name!r} ({field}) is not in {inventory}{hint}")
            elif groups[name] == 0:
                found.setdefault(service, {})[side] = (
                    f"inventory group {name!r} ({field}) has no hosts in {inventory}")
    return found
