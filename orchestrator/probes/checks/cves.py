"""`cves`: no CVE is open on the host at or above an urgency, by the advisory feeds of
bluegreen.yml (`advisories:`): the host's installed packages (dpkg-query, binary -> source)
joined with the feeds' vulnerabilities, versions compared by Debian's rules.

In bluegreen.yml (one item of a service's `checks:`)::

    - {kind: cves, min_urgency: high}
    - {kind: cves, min_urgency: medium, fixable_only: true, ignore: [CVE-2026-0002]}

`fixable_only`: count only CVEs whose fix the configured repositories offer (a CVE without
a fix cannot block every flip). A feed that cannot be read whole is an error, never a pass.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from pydantic import Field, PrivateAttr, field_validator

from orchestrator.advisories.base import CVE_RE
from orchestrator.advisories.exposure import INSTALLED_QUERY, parse_installed
from orchestrator.probes.base import ProbeTarget
from orchestrator.probes.checks.base import BaseCheck, Outcome, run_command

if TYPE_CHECKING:
    from orchestrator.advisories.exposure import Catalog
    from orchestrator.advisories.settings import AdvisorySettings
    from orchestrator.config.loaded import LoadedConfig


class CvesCheck(BaseCheck):
    """No CVE open at or above `min_urgency` (by the configured advisory feeds)."""

    kind: Literal["cves"]
    min_urgency: Literal["unimportant", "low", "medium", "high", "critical"] = "high"
    fixable_only: bool = False
    ignore: list[str] = Field(default_factory=list, max_length=1000)

    _settings: AdvisorySettings | None = PrivateAttr(default=None)
    _cache_dir: Path | None = PrivateAttr(default=None)
    _lock: threading.Lock = PrivateAttr(default_factory=threading.Lock)
    _catalogs: dict[frozenset[tuple[str, str]], Catalog] = PrivateAttr(default_factory=dict)

    @field_validator("ignore")
    @classmethod
    def _cves(cls, value: list[str]) -> list[str]:
        bad = [v for v in value if not CVE_RE.match(v)]
        if bad:
            raise ValueError(f"not CVE ids: {', '.join(bad[:5])} (write CVE-YYYY-NNNN)")
        return value

    def primary_id(self) -> str:
        return self._single_id(self.min_urgency)

    def configure(self, config: LoadedConfig) -> None:
        """The feeds to judge by: the config's `advisories:`."""
        self._settings = config.model.advisories
        self._cache_dir = config.advisories_cache_path

    def _catalog(self, sources: dict[str, str]) -> Catalog:
        from orchestrator.advisories.catalog import load_catalog

        if self._settings is None or self._cache_dir is None:
            raise RuntimeError("the cves check was not given the advisory feeds")
        key = frozenset(sources.items())
        with self._lock:  # hosts of one side usually share their packages: load once
            if key not in self._catalogs:
                self._catalogs[key] = load_catalog(
                    self._settings, self._cache_dir, sources=sources
                )
            return self._catalogs[key]

    def outcomes(self, host: Any, target: ProbeTarget) -> Iterable[Outcome]:
        cid = self.primary_id()
        rc, out, err = run_command(host, INSTALLED_QUERY)
        installed = parse_installed(out)
        if rc != 0 or not installed:
            yield cid, "error", f"cannot read the installed packages (rc {rc}): {err.strip()[:200]}"
            return
        sources: dict[str, str] = {}
        for p in installed:
            sources.setdefault(p.source, p.source_version)
        try:
            catalog = self._catalog(sources)
        except Exception as exc:  # BadInput of a feed: nothing decided from it
            message = getattr(exc, "message", str(exc))
            yield cid, "error", f"advisory feeds not usable: {message}"[:500]
            return
        exposure = catalog.open_on(target.name, installed)
        found = [
            c
            for c in exposure.at_or_above(self.min_urgency)
            if c.cve not in self.ignore and (c.fix_available or not self.fixable_only)
        ]
        if not found:
            yield (
                cid,
                "pass",
                f"no CVE open at or above {self.min_urgency} ({len(installed)} packages, "
                f"{len(catalog)} CVE records)",
            )
            return
        shown = "; ".join(
            f"{c.cve} {c.urgency} ({c.source} {c.installed} < {c.fixed_version or 'no fix'})"
            for c in found[:8]
        )
        more = f" (+{len(found) - 8} more)" if len(found) > 8 else ""
        yield cid, "fail", f"{len(found)} CVEs open at or above {self.min_urgency}: {shown}{more}"
