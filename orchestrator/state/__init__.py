"""State store: services and their live side, each side's patch level and verification,
run journal, service locks, and the tamper-evident audit chain.

`StateStore` is the contract; `SQLiteStateStore` the default backend. Every state change
is appended to the audit chain in the same transaction (see `base.py` for the rules).
"""

from orchestrator.state.audit import redact
from orchestrator.state.audit_verify import ChainReport, Finding, WitnessHead, verify_chain
from orchestrator.state.base import StateStore
from orchestrator.state.models import (
    SIDE_STATES,
    AuditEntryInput,
    AuditRecord,
    JournalEntry,
    LockHolder,
    LockInfo,
    OsIdentity,
    PendingFlip,
    Run,
    RunStatus,
    ServiceState,
    SideState,
    SideStateName,
)
from orchestrator.state.sqlite import SCHEMA_VERSION, SQLiteStateStore

__all__ = [
    "SCHEMA_VERSION",
    "SIDE_STATES",
    "AuditEntryInput",
    "AuditRecord",
    "ChainReport",
    "Finding",
    "JournalEntry",
    "LockHolder",
    "LockInfo",
    "OsIdentity",
    "PendingFlip",
    "Run",
    "RunStatus",
    "SQLiteStateStore",
    "ServiceState",
    "SideState",
    "SideStateName",
    "StateStore",
    "WitnessHead",
    "redact",
    "verify_chain",
]
