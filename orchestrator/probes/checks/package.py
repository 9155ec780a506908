"""`package`: the installed version is at least the fixed one, compared by the host's own
package manager (dpkg, or rpm).

In bluegreen.yml (one item of a service's `checks:`)::

    - {kind: package, name: demo-openssl, fixed: 3.0.15-1, advisory: DEMO-2026-01,
       cves: [CVE-2026-0001]}
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any, Literal

from pydantic import Field, field_validator

from orchestrator.probes.base import ProbeTarget
from orchestrator.probes.checks.base import BaseCheck, Outcome, run_command

_VERSION_RE = re.compile(r"^[A-Za-z0-9.+~:_-]+$")


class PackageCheck(BaseCheck):
    """Installed version >= fixed, compared by the host's own package manager."""

    kind: Literal["package"]
    name: str
    fixed: str
    advisory: str | None = None
    cves: list[str] = Field(default_factory=list)

    @field_validator("name", "fixed")
    @classmethod
    def _safe(cls, v: str) -> str:
        if not _VERSION_RE.match(v):
            raise ValueError("only letters, digits and . + ~ : _ - are allowed")
        return v

    def primary_id(self) -> str:
        return self._single_id(self.name)

    def _advisory(self) -> str:
        if not self.advisory and not self.cves:
            return ""
        inner = self.advisory or ""
        if self.cves:
            inner = f"{inner}: {', '.join(self.cves)}" if inner else ", ".join(self.cves)
        return f" ({inner})"

    def outcomes(self, host: Any, target: ProbeTarget) -> Iterable[Outcome]:
        cid = self.primary_id()
        if host.exists("dpkg-query"):
            rc, out, err = run_command(host, "dpkg-query -W -f '${Status}\\t${Version}' %s", self.name)
            status, _, installed = out.partition("\t")
            if rc != 0 or not status.strip().endswith(" installed") or not installed:
                yield (
                    cid,
                    "fail",
                    f"{self.name} not installed (fixed {self.fixed}){self._advisory()}",
                )
                return
            installed = installed.strip()
            rc, _, err = run_command(host, "dpkg --compare-versions %s ge %s", installed, self.fixed)
            if rc not in (0, 1):
                yield cid, "error", f"dpkg --compare-versions failed (rc {rc}): {err.strip()}"
                return
            newer = rc == 0
        elif host.exists("rpm"):
            rc, out, err = run_command(
                host, "rpm -q --qf '%%{EPOCH}:%%{VERSION}-%%{RELEASE}\\n' %s", self.name
            )
            if rc != 0 or not out.strip():
                yield (
                    cid,
                    "fail",
                    f"{self.name} not installed (fixed {self.fixed}){self._advisory()}",
                )
                return
            installed = out.strip().splitlines()[0].removeprefix("(none):")
            cmp = self._rpm_compare(host, installed)
            if cmp is None:
                yield (
                    cid,
                    "error",
                    "cannot compare rpm versions (no rpmdev-vercmp, rpm --eval failed)",
                )
                return
            newer = cmp >= 0
        else:
            yield cid, "error", "no dpkg-query or rpm on the host: cannot read package versions"
            return
        if newer:
            yield cid, "pass", f"{self.name} {installed} >= fixed {self.fixed}{self._advisory()}"
        else:
            yield cid, "fail", f"{self.name} {installed} < fixed {self.fixed}{self._advisory()}"

    def _rpm_compare(self, host: Any, installed: str) -> int | None:
        if host.exists("rpmdev-vercmp"):
            rc, _, _ = run_command(host, "rpmdev-vercmp %s %s", installed, self.fixed)
            if rc in (0, 11, 12):
                return {0: 0, 11: 1, 12: -1}[rc]
        expr = f'%{{lua: print(rpm.vercmp("{installed}", "{self.fixed}"))}}'
        rc, out, _ = run_command(host, "rpm --eval %s", expr)
        if rc == 0 and out.strip().lstrip("-").isdigit():
            return int(out.strip())
        return None
