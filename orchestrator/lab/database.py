"""The lab's state store: on the team backend, `bluegreen lab up --state postgresql` keeps
it in a database of the local PostgreSQL server (`./bootstrap.sh postgres` starts it), made
with Debian's `createdb` if it is missing, its schema created through the state registry;
and what a reset or re-image makes the store forget (`forget_reimaged`)."""

from __future__ import annotations

import subprocess
from collections.abc import Sequence

from orchestrator.errors import BadInput, LabError
from orchestrator.lab.hosts import HostSpec
from orchestrator.lab.paths import LabPaths
from orchestrator.processes import run


def lab_state_url(paths: LabPaths, choice: str) -> str | None:
    """`--state`: sqlite (None: the lab's SQLite file), postgresql (a database named after
    this lab instance on the local server, created if missing), or a postgresql:// URL."""
    if choice == "sqlite":
        return None
    if choice == "postgresql":
        _create_database(own_database(paths))
        return f"postgresql:///{own_database(paths)}"
    from orchestrator.state.registry import parse_state_url

    try:
        location = parse_state_url(choice)
    except ValueError as exc:
        raise BadInput(f"--state: {exc}", hint="use sqlite, postgresql, or a postgresql:// "
                       "URL of an existing database") from exc
    if location.scheme != "postgresql":
        raise BadInput("--state: the lab's SQLite store is chosen with `--state sqlite`",
                       hint="use sqlite, postgresql, or a postgresql:// URL")
    return location.url


def own_database(paths: LabPaths) -> str:
    """The database `--state postgresql` makes for this lab instance (bluegreen_labN)."""
    return paths.root.name.replace("-", "_")


def drop_own_database(paths: LabPaths, state_url: str | None) -> list[str]:
    """`lab down`: drop the database `lab up --state postgresql` made (its chain was keyed
    with the lab's key, which goes with the lab); never a database given by URL. What is
    left behind, as `down`'s leftovers."""
    if state_url != f"postgresql:///{own_database(paths)}":
        return []
    try:
        done = run(["dropdb", "--if-exists", "--force", own_database(paths)], timeout=60)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return [f"database {own_database(paths)} ({exc})"]
    return [] if done.returncode == 0 else [f"database {own_database(paths)}: "
                                            f"{done.stderr.strip()}"]


def _create_database(name: str) -> None:
    try:
        done = run(["createdb", name], timeout=60)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise LabError(f"cannot run createdb for the lab's database {name}: {exc}",
                       hint="./bootstrap.sh postgres (installs and starts PostgreSQL)") from exc
    if done.returncode != 0 and "already exists" not in done.stderr:
        raise LabError(f"createdb {name} failed: {done.stderr.strip()}",
                       hint="./bootstrap.sh postgres (installs and starts PostgreSQL, and "
                       "gives this user a role that may create databases)")


def forget_reimaged(paths: LabPaths, url: str | None, targets: Sequence[HostSpec], *,
                    reset_all: bool) -> None:
    """The lab's state store must not keep believing anything about re-imaged hosts:
    their sides become untouched (nothing verified survives a re-image) and traffic is
    recorded back on blue, with no earlier flip to roll back to (audited "lab.reset")."""
    from orchestrator.sides import SIDES
    from orchestrator.state.models import AuditEntryInput
    from orchestrator.state.registry import open_store, parse_state_url, sqlite_location
    from orchestrator.traffic.connect import default_actor

    if url is None:
        db = paths.root / "state" / "state.db"
        if not db.exists():
            return
        location = sqlite_location(db)
    else:
        location = parse_state_url(url)

    touched: dict[str, set[str]] = {}
    for spec in targets:
        touched.setdefault(spec.service, set()).add(spec.side)
    # the lab's audit key lives in <lab>/audit/ (its bluegreen.yml says so), not beside
    # the database: with the default key the keyed chain would be refused as re-keyed
    store = open_store(location, audit_key_file=paths.audit_key)
    try:
        for service, sides in sorted(touched.items()):
            reimaged = list(SIDES) if reset_all else [s for s in SIDES if s in sides]
            reason = f"lab reset: re-imaged {', '.join(reimaged)}; traffic back on blue"
            store.reset_service(
                service, "blue", reimaged, reason,
                audit=AuditEntryInput(actor=default_actor(None), command="lab.reset",
                                      service=service, reason=reason),
            )
    finally:
        store.close()

