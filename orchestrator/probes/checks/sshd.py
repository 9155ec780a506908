"""`sshd`: effective sshd settings, as `sshd -T` reports them.

In bluegreen.yml (one item of a service's `checks:`)::

    - {kind: sshd, settings: {passwordauthentication: "no", permitrootlogin: prohibit-password}}
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, Literal

from pydantic import field_validator

from orchestrator.probes.base import ProbeTarget
from orchestrator.probes.checks.base import BaseCheck, Outcome, normalized, run_command


def parse_sshd_t(output: str) -> dict[str, list[str]]:
    """Parse `sshd -T`: lower-case keyword -> values (repeated keywords keep every value)."""
    settings: dict[str, list[str]] = {}
    for line in output.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        key, _, value = line.partition(" ")
        settings.setdefault(key.lower(), []).append(value.strip())
    return settings


class SshdCheck(BaseCheck):
    """Effective sshd settings from `sshd -T` (what sshd really uses, after Includes)."""

    kind: Literal["sshd"]
    settings: dict[str, str]
    config: str | None = None

    @field_validator("settings", mode="before")
    @classmethod
    def _lower(cls, v: object) -> object:
        if isinstance(v, dict):
            return {str(k).lower(): _bool_word(val) for k, val in v.items()}
        return v

    def outcomes(self, host: Any, target: ProbeTarget) -> Iterable[Outcome]:
        sshd = host.find_command("sshd")
        if self.config:
            rc, out, err = run_command(host, "%s -T -f %s", sshd, self.config)
        else:
            rc, out, err = run_command(host, "%s -T", sshd)
        if rc != 0 or not out.strip():
            yield self.primary_id(), "error", f"sshd -T failed (rc {rc}): {err.strip()[:200]}"
            return
        effective = parse_sshd_t(out)
        for key, want in self.settings.items():
            cid = self.check_id(key)
            values = effective.get(key)
            if values is None:
                yield cid, "fail", f"{key} not in sshd -T output (want {want})"
            elif normalized(want) in {normalized(v) for v in values}:
                yield cid, "pass", f"{key} {' | '.join(values)}"
            else:
                yield cid, "fail", f"{key} is {' | '.join(values)}, want {want}"


def _bool_word(v: object) -> str:
    # YAML turns `no`/`yes` into booleans; sshd -T prints words.
    if isinstance(v, bool):
        return "yes" if v else "no"
    return str(v)
