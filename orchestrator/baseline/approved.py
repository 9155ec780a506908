"""An approved baseline: the fingerprint a side's hosts must keep, in a reviewable file.

`save_baseline` writes the part of the fingerprint all hosts of a side agree on (sorted,
stable JSON, no timestamps: a diff in the user's repository shows exactly what changed);
`check_baseline` compares hosts against it. The file lives next to the user's config
(default `baselines/SERVICE.json`).
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from orchestrator.config.files import FileKind, read_json_mapping
from orchestrator.errors import BadInput, BluegreenError
from orchestrator.probes.drift import (
    KINDS,
    DriftReport,
    Fingerprint,
    compare_to_baseline,
)

if TYPE_CHECKING:
    from orchestrator.config.loaded import LoadedConfig
    from orchestrator.sides import Side

FORMAT = 1
BASELINE_FILE = FileKind(
    what="baseline file",
    max_bytes=8 * 1024 * 1024,  # a fingerprint of a few thousand packages and files
    missing_hint="create it with `bluegreen baseline save SERVICE` and review it",
    wrong_file_hint="point at the JSON file `bluegreen baseline save` wrote",
    content_hint="save it again with `bluegreen baseline save`",
)


def common_part(fps: Sequence[Fingerprint]) -> dict[str, dict[str, str]]:
    """What every fingerprint agrees on (keys absent or different on any host are left out)."""
    if not fps:
        return {}
    out: dict[str, dict[str, str]] = {}
    for kind in KINDS:
        first = fps[0].items.get(kind, {})
        same = {
            key: value
            for key, value in first.items()
            if all(fp.items.get(kind, {}).get(key) == value for fp in fps[1:])
        }
        out[kind] = dict(sorted(same.items()))
    return out


def baseline_document(
    service: str, side: str, hosts: Sequence[str], files: Sequence[str], fps: Sequence[Fingerprint]
) -> dict[str, Any]:
    return {
        "format": FORMAT,
        "service": service,
        "side": side,
        "hosts": sorted(hosts),
        "files": sorted(files),
        "fingerprint": common_part(fps),
    }


def write_baseline(path: Path, doc: Mapping[str, Any]) -> None:
    """Atomically and never through a symlink (`safe_write`)."""
    from orchestrator.safe_write import write_file

    write_file(path, json.dumps(doc, indent=2, sort_keys=True) + "\n", make_parents=True)


def read_baseline(path: Path) -> dict[str, dict[str, str]]:
    """The fingerprint part of a baseline file; bad input names the file and the fix."""
    doc = read_json_mapping(path, BASELINE_FILE)
    fp = doc.get("fingerprint")
    if (
        doc.get("format") != FORMAT
        or not isinstance(fp, dict)
        or not all(isinstance(v, dict) for v in fp.values())
    ):
        raise BadInput(
            f"{path}: field `format` must be {FORMAT} and `fingerprint` a mapping of mappings",
            hint="save it again with `bluegreen baseline save`",
        )
    bad = sorted(set(fp) - set(KINDS))
    if bad:
        raise BadInput(f"{path}: unknown kinds in `fingerprint`: {bad}", hint=f"use {KINDS}")
    return {str(k): {str(a): str(b) for a, b in v.items()} for k, v in fp.items()}


def check_against(
    hosts: Sequence[str],
    fps: Mapping[str, Fingerprint],
    errors: Mapping[str, str],
    baseline: Mapping[str, Mapping[str, str]],
    seconds: float,
) -> DriftReport:
    return DriftReport(tuple(hosts), compare_to_baseline(fps, baseline), dict(errors), seconds)


class BaselineUnavailable(BluegreenError):
    """A baseline cannot be saved: some host of the side could not be read."""


def baseline_path(config: LoadedConfig, service: str, path: str | None) -> Path:
    """The file given (relative to the config), else baselines/SERVICE.json beside it."""
    return config.resolve(path) if path else config.base_dir / "baselines" / f"{service}.json"


@dataclass(frozen=True)
class SideFingerprints:
    """What the hosts of some sides of a service said (`errors`: hosts that could not be
    read, and why)."""

    hosts: list[str]
    files: list[str]
    fingerprints: dict[str, Fingerprint]
    errors: dict[str, str]


def side_fingerprints(config: LoadedConfig, service: str,
                      sides: Sequence[Side]) -> SideFingerprints:
    from orchestrator.inventory import load_fleet
    from orchestrator.probes.drift import read_fingerprints
    from orchestrator.probes.gate import targets_for

    fleet = load_fleet(config).service(service)
    targets = targets_for(config, [h for s in sides for h in fleet.side(s)])
    settings = config.service(service).drift
    files = list(settings.files)
    fps, errors = read_fingerprints(targets, files, security=settings.security)
    return SideFingerprints([t.name for t in targets], files, dict(fps), dict(errors))


@dataclass(frozen=True)
class SavedBaseline:
    path: Path
    service: str
    side: Side
    hosts: list[str]
    counts: dict[str, int]
    """Entries per kind (packages, units, ports, files) in the saved fingerprint."""

    def as_dict(self) -> dict[str, Any]:
        return {"path": str(self.path), "service": self.service, "side": self.side,
                "counts": self.counts}


def save_baseline(config: LoadedConfig, service: str, side: Side,
                  path: str | None = None) -> SavedBaseline:
    """Write what every host of SERVICE's `side` agrees on as its approved baseline.
    BaselineUnavailable (nothing written) when any host cannot be read."""
    seen = side_fingerprints(config, service, [side])
    if seen.errors or not seen.fingerprints:
        why = "; ".join(f"{h}: {e}" for h, e in sorted(seen.errors.items())) or "no hosts"
        raise BaselineUnavailable(f"{service} {side}: cannot read every host: {why}")
    out = baseline_path(config, service, path)
    doc = baseline_document(service, side, seen.hosts, seen.files,
                            [seen.fingerprints[h] for h in seen.hosts])
    write_baseline(out, doc)
    return SavedBaseline(out, service, side, seen.hosts,
                         {k: len(v) for k, v in doc["fingerprint"].items()})


def check_baseline(config: LoadedConfig, service: str, side: Side | None = None,
                   path: str | None = None) -> tuple[Path, DriftReport]:
    """Compare the hosts of SERVICE's `side` (default: both sides) against its approved
    baseline: the file read, and what differs (a host that cannot be read is an error,
    never a pass)."""
    from orchestrator.sides import SIDES

    config.service(service)
    source = baseline_path(config, service, path)
    approved = read_baseline(source)
    started = time.monotonic()
    seen = side_fingerprints(config, service, [side] if side else SIDES)
    return source, check_against(seen.hosts, seen.fingerprints, seen.errors, approved,
                                 time.monotonic() - started)
