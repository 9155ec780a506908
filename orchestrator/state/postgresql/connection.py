"""A psycopg 3 connection for the shared SQL: `?` placeholders translated to psycopg's,
rows by column name, autocommit (transactions are explicit), and every driver error
turned into a `StateError` that names the database (never its connection string) and a fix.

The URL is handed to libpq as it is: the password comes from PGPASSWORD or the password
file (~/.pgpass, PGPASSFILE, or `passfile=` in the URL), TLS from `sslmode`,
`sslrootcert`, ... in the URL.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from functools import lru_cache
from typing import Any

import psycopg
from psycopg import errors as pg_errors
from psycopg.rows import dict_row

from orchestrator.errors import StateError
from orchestrator.secrets import scrub

CONNECT_TIMEOUT_S = 10
KEEPALIVES = ("keepalives=1 keepalives_idle=10 keepalives_interval=5 keepalives_count=3"
              " tcp_user_timeout=30000")
"""libpq's TCP settings: a peer that vanished (partition, failover, a server that died
without closing) is noticed within about 30 s instead of the kernel's hours, so a holder
whose session (and so its advisory locks) is gone learns it at its next statement.
Ignored on a unix socket."""


@lru_cache(maxsize=512)
def to_psycopg(sql: str) -> str:
    """The shared SQL's `?` placeholders as psycopg's `%s` (a literal `%` doubled). The
    shared SQL never puts `?` inside a string literal."""
    return sql.replace("%", "%%").replace("?", "%s")


class PgConnection:
    """The `Connection` of `orchestrator.state.sql.database` over a psycopg connection."""

    def __init__(self, raw: psycopg.Connection[dict[str, Any]]) -> None:
        self.raw = raw

    def execute(self, sql: str, parameters: Sequence[Any] = (), /) -> psycopg.Cursor[Any]:
        return self.raw.execute(to_psycopg(sql), tuple(parameters))

    def scalar(self, sql: str, parameters: Sequence[Any] = ()) -> Any:
        row = self.execute(sql, parameters).fetchone()
        return None if row is None else next(iter(row.values()))

    def close(self) -> None:
        self.raw.close()


def connect(url: str, label: str, *, lock_timeout_ms: int = 5000) -> PgConnection:
    """An autocommit connection whose `application_name` says who holds it (pg_stat_activity
    then names the process and host of every session, and so of every advisory lock),
    whose statements wait at most `lock_timeout_ms` for a lock, and with TCP keepalives
    (`KEEPALIVES`)."""
    name = f"bluegreen pid {os.getpid()} on {socket.gethostname()}"[:63]
    with translate(label):
        raw = psycopg.connect(with_keepalives(url), autocommit=True, row_factory=dict_row,
                              connect_timeout=CONNECT_TIMEOUT_S, application_name=name,
                              options=f"-c lock_timeout={max(1, int(lock_timeout_ms))}")
    return PgConnection(raw)


def with_keepalives(url: str) -> str:
    """`url` with `KEEPALIVES` as defaults (settings the URL gives itself win)."""
    from psycopg.conninfo import conninfo_to_dict, make_conninfo

    given = conninfo_to_dict(url)
    wanted = conninfo_to_dict(KEEPALIVES)
    return make_conninfo(url, **{k: v for k, v in wanted.items() if k not in given})


@contextmanager
def translate(label: str) -> Iterator[None]:
    """Turn psycopg errors into StateError naming the database and a fix."""
    try:
        yield
    except psycopg.Error as exc:
        raise state_error(label, exc) from exc


def state_error(label: str, exc: psycopg.Error) -> StateError:
    text = scrub(str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__)
    low = text.lower()
    hint: str | None
    if isinstance(exc, pg_errors.LockNotAvailable):
        hint = "another process is writing the state database; retry when it is done"
    elif "password" in low or "authentication" in low:
        hint = ("give the password in PGPASSWORD or a password file (~/.pgpass mode 0600, or "
                "passfile=PATH in the URL); never in bluegreen.yml")
    elif isinstance(exc, psycopg.OperationalError):
        hint = ("check that the server is running and reachable, and the URL's host, port, "
                "user and database (state.url)")
    elif isinstance(exc, pg_errors.UndefinedTable):
        hint = "create or update the schema with `bluegreen state migrate`"
    elif isinstance(exc, pg_errors.InsufficientPrivilege):
        hint = "grant the role the privileges on the bluegreen tables (see README: Team mode)"
    else:
        hint = None
    return StateError(f"state database {label}: {text}", hint=hint)
