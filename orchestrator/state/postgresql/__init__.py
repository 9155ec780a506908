"""The team state backend: one PostgreSQL database (psycopg 3), advisory locks, one audit
chain for every machine (see `store.py` for what a caller must know). Imported only for a
`postgresql://` state URL (`orchestrator.state.registry`)."""

from orchestrator.state.postgresql.schema import SCHEMA_VERSION
from orchestrator.state.postgresql.store import PostgresStateStore

__all__ = ["SCHEMA_VERSION", "PostgresStateStore"]
