"""`file`: a path exists (or not), with its mode, owner, group and content.

In bluegreen.yml (one item of a service's `checks:`)::

    - {kind: file, path: /etc/passwd, mode: "0644", owner: root, content_regex: "^root:"}
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any, Literal

from pydantic import field_validator

from orchestrator.probes.base import ProbeTarget, Status
from orchestrator.probes.checks.base import BaseCheck, Outcome


class FileCheck(BaseCheck):
    kind: Literal["file"]
    path: str
    exists: bool = True
    mode: int | None = None
    owner: str | None = None
    group: str | None = None
    content_regex: str | None = None

    @field_validator("mode", mode="before")
    @classmethod
    def _mode(cls, v: object) -> object:
        if isinstance(v, str):
            return int(v.removeprefix("0o"), 8)
        return v

    def primary_id(self) -> str:
        return self._single_id(self.path)

    def outcomes(self, host: Any, target: ProbeTarget) -> Iterable[Outcome]:
        cid = self.primary_id()
        f = host.file(self.path)
        exists = bool(f.exists)
        if not exists:
            status: Status = "pass" if not self.exists else "fail"
            yield cid, status, f"{self.path} does not exist"
            return
        if not self.exists:
            yield cid, "fail", f"{self.path} exists but must not"
            return
        problems: list[str] = []
        facts: list[str] = []
        if self.mode is not None:
            mode = int(f.mode)
            facts.append(f"mode {mode:04o}")
            if mode != self.mode:
                problems.append(f"mode {mode:04o} != {self.mode:04o}")
        if self.owner is not None:
            owner = str(f.user)
            facts.append(f"owner {owner}")
            if owner != self.owner:
                problems.append(f"owner {owner} != {self.owner}")
        if self.group is not None:
            group = str(f.group)
            facts.append(f"group {group}")
            if group != self.group:
                problems.append(f"group {group} != {self.group}")
        if self.content_regex is not None:
            content = str(f.content_string)
            if not re.search(self.content_regex, content, re.M):
                problems.append(f"content does not match /{self.content_regex}/")
            else:
                facts.append(f"content matches /{self.content_regex}/")
        if problems:
            yield cid, "fail", f"{self.path}: " + "; ".join(problems)
        else:
            yield cid, "pass", f"{self.path}: " + (", ".join(facts) or "exists")
