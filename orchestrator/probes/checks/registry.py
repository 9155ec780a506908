"""The kinds of built-in check: name -> "module.Class", imported only when a check of that
kind is parsed (start-up stays fast, and a kind's dependencies load with it).

A new kind is a new module in this package plus one line here; the engine has no `if`
per kind. `parse_checks()` validates the `checks:` list of bluegreen.yml against them.
"""

from __future__ import annotations

import importlib
from typing import Any

from pydantic import ValidationError

from orchestrator.errors import BadInput
from orchestrator.probes.checks.base import BaseCheck

KINDS: dict[str, str] = {
    "http": "orchestrator.probes.checks.http.HttpCheck",
    "service": "orchestrator.probes.checks.service.ServiceCheck",
    "listening": "orchestrator.probes.checks.listening.ListeningCheck",
    "package": "orchestrator.probes.checks.package.PackageCheck",
    "stale-processes": "orchestrator.probes.checks.stale_processes.StaleProcessesCheck",
    "reboot-pending": "orchestrator.probes.checks.reboot_pending.RebootPendingCheck",
    "file": "orchestrator.probes.checks.file.FileCheck",
    "sshd": "orchestrator.probes.checks.sshd.SshdCheck",
    "sysctl": "orchestrator.probes.checks.sysctl.SysctlCheck",
    "command": "orchestrator.probes.checks.command.CommandCheck",
    "cves": "orchestrator.probes.checks.cves.CvesCheck",
}

SHAPES_HINT = "see the check kinds in orchestrator/probes/checks/ (one module per kind)"


def check_class(kind: str) -> type[BaseCheck]:
    """The model of `kind` (KeyError for a kind that is not registered)."""
    module, _, name = KINDS[kind].rpartition(".")
    cls = getattr(importlib.import_module(module), name)
    if not (isinstance(cls, type) and issubclass(cls, BaseCheck)):
        raise TypeError(f"{KINDS[kind]} is not a check (a BaseCheck subclass)")
    return cls


def parse_checks(data: object, *, source: str = "checks") -> list[BaseCheck]:
    """Validate a list of check mappings (from YAML); every problem of every item in one
    BadInput that names `source[index.kind.field]`."""
    if not isinstance(data, list):
        raise BadInput(
            f"invalid probe checks:\n  {source}: expected a list of checks", hint=SHAPES_HINT
        )
    checks: list[BaseCheck] = []
    problems: list[str] = []
    for index, item in enumerate(data):
        kind = item.get("kind") if isinstance(item, dict) else None
        if not isinstance(item, dict):
            problems.append(f"{source}[{index}]: expected a mapping with `kind:`")
        elif not isinstance(kind, str) or kind not in KINDS:
            known = ", ".join(KINDS)
            what = "missing" if kind is None else f"unknown kind {kind!r}"
            problems.append(f"{source}[{index}.kind]: {what} (known kinds: {known})")
        else:
            try:
                checks.append(check_class(kind).model_validate(item))
            except ValidationError as exc:
                problems += [_problem(source, index, kind, e) for e in exc.errors()]
    if problems:
        raise BadInput("invalid probe checks:\n  " + "\n  ".join(problems), hint=SHAPES_HINT)
    return checks


def _problem(source: str, index: int, kind: str, error: Any) -> str:
    where = ".".join(str(p) for p in (index, kind, *error["loc"]))
    return f"{source}[{where}]: {error['msg']}"
