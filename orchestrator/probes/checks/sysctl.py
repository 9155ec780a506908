"""`sysctl`: kernel parameters read from /proc/sys.

In bluegreen.yml (one item of a service's `checks:`)::

    - {kind: sysctl, values: {kernel.randomize_va_space: 2}}
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any, Literal

from pydantic import field_validator

from orchestrator.probes.base import ProbeTarget
from orchestrator.probes.checks.base import BaseCheck, Outcome, normalized, run_command


class SysctlCheck(BaseCheck):
    kind: Literal["sysctl"]
    values: dict[str, str]

    @field_validator("values", mode="before")
    @classmethod
    def _strings(cls, v: object) -> object:
        if isinstance(v, dict):
            return {str(k): str(int(val) if isinstance(val, bool) else val) for k, val in v.items()}
        return v

    def outcomes(self, host: Any, target: ProbeTarget) -> Iterable[Outcome]:
        for key, want in self.values.items():
            cid = self.check_id(key)
            if not re.fullmatch(r"[A-Za-z0-9_.\-]+", key):
                yield cid, "error", f"invalid sysctl key {key!r}"
                continue
            rc, out, err = run_command(host, "cat %s", "/proc/sys/" + key.replace(".", "/"))
            if rc != 0:
                yield cid, "fail", f"cannot read {key}: {err.strip()}"
            elif normalized(out) == normalized(want):
                yield cid, "pass", f"{key} = {out.strip()}"
            else:
                yield cid, "fail", f"{key} = {out.strip()}, want {want}"
