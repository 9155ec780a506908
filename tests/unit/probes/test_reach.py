"""`probes.reach.unreached`: a gate's failures are this machine's only when every failing
host cannot be connected to from here."""

from __future__ import annotations

import socket
from pathlib import Path

from orchestrator.probes.base import ProbeTarget
from orchestrator.probes.reach import unreached


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_every_failing_host_unreachable_is_an_error_not_a_verdict(tmp_path: Path) -> None:
    known = tmp_path / "known_hosts"
    known.write_text("")
    a = ProbeTarget("a", "127.0.0.1", str(known), port=closed_port(), connect_timeout=1.0)
    b = ProbeTarget("b", "127.0.0.1", str(known), port=closed_port(), connect_timeout=1.0)
    found = unreached([a, b], ["a", "b"])  # no host answers: this machine's network
    assert set(found) == {"a", "b"} and all("unreachable" in why for why in found.values())
    # one host down while the others answer (b passed): the host's failure, a verdict
    assert unreached([a, b], ["a"]) == {}
    # a failing host that is not one of the targets (nothing known about it): a verdict
    assert unreached([a], ["a", "elsewhere"]) == {}
    assert unreached([a, b], []) == {}
