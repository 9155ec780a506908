"""State backends by URL scheme: `sqlite:///PATH` (the default, one file) and
`postgresql://USER@HOST/DB` (team mode). Standard library only: a backend's module (and
its driver, psycopg for PostgreSQL) is imported only when a store of that kind is opened,
so `bluegreen rollback` on SQLite never pays for PostgreSQL.

A URL never carries a password (`parse_state_url` refuses one, in the user-info or as a
`password=` parameter): libpq reads it from
PGPASSWORD or the password file (~/.pgpass, or `passfile=` in the URL). Other URL
parameters (sslmode, sslrootcert, connect_timeout, ...) are passed to the driver as given.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Protocol, cast
from urllib.parse import parse_qsl, urlsplit

if TYPE_CHECKING:
    from orchestrator.state.audit import AuditHead
    from orchestrator.state.base import StateStore

BACKENDS: dict[str, str] = {
    "sqlite": "orchestrator.state.sqlite.backend",
    "postgresql": "orchestrator.state.postgresql.backend",
}
"""URL scheme -> the module implementing `Backend` (imported on first use)."""
_ALIASES = {"postgres": "postgresql"}


@dataclass(frozen=True)
class StateLocation:
    """Where a state store is: a SQLite file or a server database."""

    scheme: str
    """A key of `BACKENDS`."""
    url: str
    """The URL as the driver gets it (no password in it, ever)."""
    path: Path | None = None
    """The file of a SQLite store."""

    @property
    def label(self) -> str:
        """How messages and witness lines name the store: the file, or the URL without its
        query (which may name local files such as certificates)."""
        if self.path is not None:
            return str(self.path)
        parts = urlsplit(self.url)
        return f"{parts.scheme}://{parts.netloc}{parts.path}"

    @property
    def is_local_file(self) -> bool:
        return self.path is not None


def sqlite_location(path: Path) -> StateLocation:
    return StateLocation("sqlite", f"sqlite://{path}", path)


def parse_state_url(text: str) -> StateLocation:
    """`sqlite:///PATH` (an absolute path) or
    `postgresql://USER@HOST[:PORT]/DB[?PARAMS]`. ValueError naming the problem and the fix."""
    scheme, sep, _ = text.partition("://")
    if not sep:
        raise ValueError(f"{text!r} is not a URL: use sqlite:///PATH or "
                         "postgresql://USER@HOST/DB")
    scheme = _ALIASES.get(scheme.lower(), scheme.lower())
    if scheme not in BACKENDS:
        raise ValueError(f"unknown state backend {scheme!r}: use one of "
                         f"{', '.join(sorted(BACKENDS))} (sqlite:///PATH, "
                         "postgresql://USER@HOST/DB)")
    if scheme == "sqlite":
        raw = text.split("://", 1)[1]
        if not raw.startswith("/") or not raw.strip("/"):
            raise ValueError(f"{text!r}: write a SQLite URL as sqlite:///PATH (three slashes, "
                             "then the absolute path of the file)")
        return sqlite_location(Path("/" + raw.lstrip("/")))
    try:
        parts = urlsplit(text)
        _ = parts.port  # ValueError for a port that is not a number
    except ValueError as exc:
        raise ValueError(f"the PostgreSQL URL cannot be parsed: {exc}") from None
    # libpq takes `password=` as a URL parameter too: refused like one in the user-info
    given = {k.strip().lower() for k, _ in parse_qsl(parts.query, keep_blank_values=True)}
    if parts.password is not None or "password" in given:
        where = "a password" if parts.password is not None else "a `password=` parameter"
        raise ValueError(f"the PostgreSQL URL contains {where}: remove it, and give it in "
                         "the environment (PGPASSWORD) or a password file (~/.pgpass, or "
                         "passfile=PATH in the URL)")
    if not parts.path.strip("/"):
        raise ValueError("the PostgreSQL URL names no database: postgresql://USER@HOST/DB")
    return StateLocation("postgresql", "postgresql" + text[text.index("://"):])


class Backend(Protocol):
    """What a backend module provides (`BACKENDS`)."""

    def open_store(
        self,
        location: StateLocation,
        *,
        audit_key_file: Path,
        busy_timeout_ms: int = 5000,
        clock: Callable[[], datetime] | None = None,
        migrate: bool = False,
    ) -> StateStore:
        """The store, schema brought up to date when it is a local file or `migrate`."""
        ...

    def read_head(self, location: StateLocation) -> AuditHead | None:
        """The stored audit head without opening a store (None: nothing readable)."""
        ...

    def migrate(self, location: StateLocation, *, audit_key_file: Path) -> tuple[int, int]:
        """Bring the schema to the newest version: (version before, version after)."""
        ...


def backend(location: StateLocation) -> Backend:
    return cast(Backend, importlib.import_module(BACKENDS[location.scheme]))


def open_store(
    location: StateLocation,
    *,
    audit_key_file: Path,
    busy_timeout_ms: int = 5000,
    clock: Callable[[], datetime] | None = None,
) -> StateStore:
    return backend(location).open_store(location, audit_key_file=audit_key_file,
                                        busy_timeout_ms=busy_timeout_ms, clock=clock)


def read_head(location: StateLocation) -> AuditHead | None:
    return backend(location).read_head(location)


def default_key_file(location: StateLocation, base_dir: Path) -> Path:
    """The audit key unless the config names one: beside a SQLite file; for a server
    database, `.bluegreen/audit.key` beside the config (every machine of the team needs
    a copy of the same key: it is never stored in the database)."""
    if location.path is not None:
        return location.path.with_name("audit.key")
    return base_dir / ".bluegreen" / "audit.key"
