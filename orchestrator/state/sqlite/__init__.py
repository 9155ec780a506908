"""The default state backend: one SQLite file (see `store.py` for what a caller must know)."""

from orchestrator.state.sqlite.connection import default_key_file, read_head
from orchestrator.state.sqlite.schema import SCHEMA_VERSION
from orchestrator.state.sqlite.store import SQLiteStateStore

__all__ = ["SCHEMA_VERSION", "SQLiteStateStore", "default_key_file", "read_head"]
