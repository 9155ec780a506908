"""What the safety kernel's unit tests share (tests/unit/traffic/): the audit input of test
setup, and a side made verified the only way a side gets there (patch begun, recorded at
its generation, then a passing verification). The `store` and `router` fixtures are in
tests/unit/traffic/conftest.py."""

from __future__ import annotations

from collections.abc import Mapping

from orchestrator.sides import Side
from orchestrator.state import AuditEntryInput, SQLiteStateStore
from orchestrator.testing import patched

SETUP = AuditEntryInput(actor="test", command="setup")


def verified(store: SQLiteStateStore, side: Side, level: str = "v2",
             hosts: Mapping[str, str] | None = None) -> None:
    """web's `side` patched at `level` and verified there (with these host fingerprints)."""
    patched(store, "web", side, level, audit=SETUP)
    store.record_verification("web", side, True, level, "all passed", audit=SETUP,
                              hosts=dict(hosts or {}))
