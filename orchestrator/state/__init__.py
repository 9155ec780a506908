"""State store: services and their live side, each side's patch level and verification,
run journal, service locks, and the tamper-evident audit chain.

`StateStore` is the contract; `SQLiteStateStore` the default backend. Every state change
is appended to the audit chain in the same transaction (see `base.py` for the rules).
"""

from orchestrator.state.audit import ChainReport, redact, verify_chain
from orchestrator.state.base import StateStore
from orchestrator.state.models import (
    AuditEntryInput,
    AuditRecord,
    JournalEntry,
    LockHolder,
    LockInfo,
    Run,
    RunStatus,
    ServiceState,
    SideState,
)
from orchestrator.state.sqlite import SCHEMA_VERSION, SQLiteStateStore

__all__ = [
    "SCHEMA_VERSION",
    "AuditEntryInput",
    "AuditRecord",
    "ChainReport",
    "JournalEntry",
    "LockHolder",
    "LockInfo",
    "Run",
    "RunStatus",
    "SQLiteStateStore",
    "ServiceState",
    "SideState",
    "StateStore",
    "redact",
    "verify_chain",
]
