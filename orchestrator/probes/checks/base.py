"""The base of built-in declarative checks: each kind is one pydantic model in its own
module of this package, registered by name in `registry`.

Each check runs over a testinfra `Host` (our strict SSH backend) and returns one or more
`CheckResult`s with a stable id such as "package:demo-web". Missing data, a timeout or a
command that could not run is "error" or "fail", never "pass".
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict

from orchestrator.probes.backend import DeadlineExceeded
from orchestrator.probes.base import CheckResult, ProbeTarget, Status
from orchestrator.probes.connection import CommandTimeout, ProbeConnectionError

if TYPE_CHECKING:
    from orchestrator.config.loaded import LoadedConfig

Outcome = tuple[str, Status, str]  # (check id, status, evidence)


class BaseCheck(BaseModel):
    """One kind of check. A subclass declares `kind: Literal["its-name"]` and its settings,
    and yields `(check id, status, evidence)` from `outcomes()`."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    kind: str
    id: str | None = None
    """Overrides the stable id of the check (the default is derived from its settings)."""

    def check_id(self, detail: str | None = None) -> str:
        if self.id:
            return self.id if detail is None else f"{self.id}:{detail}"
        return self.kind if detail is None else f"{self.kind}:{detail}"

    def primary_id(self) -> str:
        return self.check_id()

    def _single_id(self, detail: str) -> str:
        """Id of a check that yields one result: the `id` override, else `kind:detail`."""
        return self.id or f"{self.kind}:{detail}"

    def configure(self, config: LoadedConfig) -> None:
        """Called by the gate with the whole config before the check runs; a kind that
        needs more than its own settings (e.g. `cves`: the advisory feeds) takes it here."""

    def outcomes(self, host: Any, target: ProbeTarget) -> Iterable[Outcome]:
        raise NotImplementedError

    def run(self, host: Any, target: ProbeTarget) -> list[CheckResult]:
        """Run over `host`; any exception becomes an "error" result with its reason."""
        start = time.monotonic()
        results: list[CheckResult] = []
        try:
            for cid, status, evidence in self.outcomes(host, target):
                results.append(
                    CheckResult(target.name, cid, status, evidence, time.monotonic() - start)
                )
        except DeadlineExceeded as exc:
            results.append(self._error(target, start, exc.message))
        except CommandTimeout as exc:
            results.append(self._error(target, start, f"timeout: {exc.message}"))
        except ProbeConnectionError as exc:
            results.append(self._error(target, start, exc.message))
        except Exception as exc:  # a probe must report, not crash the run
            results.append(self._error(target, start, f"{type(exc).__name__}: {exc}"))
        if not results:
            results.append(self._error(target, start, "the check produced no result"))
        return results

    def _error(self, target: ProbeTarget, start: float, evidence: str) -> CheckResult:
        return CheckResult(
            target.name, self.primary_id(), "error", evidence, time.monotonic() - start
        )


def run_command(host: Any, command: str, *args: str) -> tuple[int, str, str]:
    """(rc, stdout, stderr) of a command on the host; `args` are quoted by testinfra."""
    out = host.run(command, *args)
    return int(out.rc), str(out.stdout), str(out.stderr)


def normalized(value: object) -> str:
    """Whitespace folded, lower case: how settings are compared."""
    return " ".join(str(value).split()).lower()
