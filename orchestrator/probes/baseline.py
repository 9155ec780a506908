"""An approved baseline: the fingerprint a side's hosts must keep, in a reviewable file.

`save_baseline` writes the part of the fingerprint all hosts of a side agree on (sorted,
stable JSON, no timestamps: a diff in the user's repository shows exactly what changed);
`check_baseline` compares hosts against it. The file lives next to the user's config
(default `baselines/SERVICE.json`).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from orchestrator.config.files import FileKind, read_json_mapping
from orchestrator.errors import BadInput, BluegreenError
from orchestrator.probes.drift import (
    KINDS,
    DriftReport,
    Fingerprint,
    compare_to_baseline,
)

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
