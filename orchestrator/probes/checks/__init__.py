"""Built-in declarative checks: `base` (BaseCheck), one module per kind, and `registry`
(kind name -> class, imported lazily; `parse_checks`).

`Check` is the type of a parsed check of any kind.
"""

from orchestrator.probes.checks.base import BaseCheck as Check
from orchestrator.probes.checks.registry import parse_checks

__all__ = ["Check", "parse_checks"]
