"""This machine's side: the state store opens and answers, and each audit witness takes a
dry write (the file opened for appending, the syslog socket or collector connected;
nothing is written)."""

from __future__ import annotations

import os
import socket

from orchestrator.config.loaded import LoadedConfig
from orchestrator.doctor.report import Check
from orchestrator.errors import BluegreenError
from orchestrator.state.witness import LOCAL_SOCKET, parse_tcp_address


def store_check(config: LoadedConfig) -> Check:
    from orchestrator.traffic import open_store

    where = config.state.label
    try:
        store = open_store(config)
        try:
            count = len(store.list_services())
        finally:
            store.close()
    except BluegreenError as exc:
        return Check("state store", False, f"{where}: {exc.message}",
                     exc.hint or "fix state.path / state.url in bluegreen.yml")
    except Exception as exc:  # noqa: BLE001 - a driver's own error: name it, never crash
        return Check("state store", False, f"{where}: {type(exc).__name__}: {exc}",
                     "fix state.path / state.url in bluegreen.yml, or the database")
    return Check("state store", True, f"{where} opens ({count} services recorded)")


def _syslog(target: str, timeout: float) -> Check:
    name = "witness syslog"
    try:
        if target == "local":
            with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
                sock.settimeout(timeout)
                sock.connect(str(LOCAL_SOCKET))
        else:
            host, port = parse_tcp_address(target)
            socket.create_connection((host, port), timeout=timeout).close()
    except (OSError, ValueError) as exc:
        return Check(name, False, f"{target}: cannot reach it: {exc}",
                     "start the syslog collector, or set audit.witness.syslog to a reachable "
                     "tcp://HOST:PORT (or off, with a file witness)")
    return Check(name, True, f"{target} reachable (nothing sent)")


def _file(path: str) -> Check:
    name = "witness file"
    try:
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC,
                     0o600)
        os.close(fd)
    except OSError as exc:
        return Check(name, False, f"cannot append to {path}: {exc.strerror or exc}",
                     "make the file (and its directory) writable for bluegreen's user, or "
                     "change audit.witness.file")
    return Check(name, True, f"{path} opens for appending (nothing written)")


def witness_checks(config: LoadedConfig) -> list[Check]:
    settings = config.audit.witness
    checks = []
    if settings.syslog != "off":
        checks.append(_syslog(settings.syslog, settings.timeout_s))
    if settings.file is not None:
        checks.append(_file(str(settings.file)))
    if not checks:
        checks.append(Check("witness", None, "no audit witness is configured: the chain's head "
                            "is kept only inside the store", "set audit.witness.file (an "
                            "append-only file) or audit.witness.syslog"))
    return checks
