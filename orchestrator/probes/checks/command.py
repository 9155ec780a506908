"""`command`: run a command (argv, no shell): exit code and stdout.

In bluegreen.yml (one item of a service's `checks:`)::

    - {kind: command, argv: [demo-web, --version], expect_rc: 0, stdout_regex: "^1\\.2"}
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Iterable
from typing import Any, Literal

from pydantic import Field

from orchestrator.probes.base import ProbeTarget
from orchestrator.probes.checks.base import BaseCheck, Outcome


class CommandCheck(BaseCheck):
    kind: Literal["command"]
    argv: list[str] = Field(min_length=1)
    expect_rc: int = 0
    stdout_regex: str | None = None
    timeout_s: float | None = None

    def primary_id(self) -> str:
        return self._single_id(self.argv[0])

    def outcomes(self, host: Any, target: ProbeTarget) -> Iterable[Outcome]:
        cmd = shlex.join(self.argv)
        out = host.backend.run_command(cmd, timeout=self.timeout_s)
        problems: list[str] = []
        if out.rc != self.expect_rc:
            problems.append(f"exit {out.rc} != {self.expect_rc}")
        if self.stdout_regex is not None and not re.search(self.stdout_regex, out.stdout, re.M):
            problems.append(f"stdout does not match /{self.stdout_regex}/")
        tail = (out.stdout.strip() or out.stderr.strip())[-300:]
        if problems:
            yield self.primary_id(), "fail", f"{cmd}: " + "; ".join(problems) + f": {tail}"
        else:
            yield self.primary_id(), "pass", f"{cmd}: exit {out.rc}" + (f": {tail}" if tail else "")
