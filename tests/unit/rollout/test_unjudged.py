"""A gate whose every failing host cannot be connected to from here records no verdict: an
audited error, the side's state as it was."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from orchestrator.probes.base import CheckResult, ProbeReport, ProbeTarget
from orchestrator.rollout.unjudged import CannotVerify, refuse_unjudged
from orchestrator.testing import temp_store


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_unreachable_hosts_give_an_audited_error_and_no_verdict(tmp_path: Path) -> None:
    known = tmp_path / "known_hosts"
    known.write_text("")
    target = ProbeTarget("web-blue-1", "127.0.0.1", str(known), port=closed_port(),
                         connect_timeout=1.0)
    report = ProbeReport([CheckResult("web-blue-1", "http", "error", "unreachable")], 0.0, 0.1,
                         ("web-blue-1",))
    with temp_store(tmp_path) as store:
        before = store.get_side("web", "blue")
        with pytest.raises(CannotVerify) as info:
            refuse_unjudged(store, "web", "blue", report, [target], actor="t", record=True)
        assert "blue was not verified" in info.value.message
        assert "bluegreen doctor web" in (info.value.hint or "")
        assert store.get_side("web", "blue") == before  # nothing recorded for the side
        (record,) = [r for r in store.audit_records("web") if r.command == "verify.error"]
        assert "web-blue-1" in record.after["unreached"]
        # a failure on a host we know nothing about (not a target): a verdict, no error
        other = ProbeReport([CheckResult("elsewhere", "http", "fail", "500")], 0.0, 0.1,
                            ("elsewhere",))
        refuse_unjudged(store, "web", "blue", other, [target], actor="t", record=True)
