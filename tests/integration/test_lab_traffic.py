"""`bluegreen lab traffic`'s generator against a real HAProxy on loopback: requests are sent
at the rate asked, counted by the backend that answered (the confirm header) and by status
class; a backend that stops shows up as 5xx, never as silence; only loopback is a target."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from orchestrator.errors import BadInput
from orchestrator.lab.traffic import send
from orchestrator.routers.registry import make_router
from tests.support.haproxy_fixture import SERVICE, HAProxyLab, running_haproxy


@pytest.fixture
def lb(tmp_path: Path) -> Iterator[HAProxyLab]:
    with running_haproxy(tmp_path) as running:
        yield running


def test_traffic_is_counted_by_backend_and_status(lb: HAProxyLab) -> None:
    report = send(lb.url("/"), rps=50, seconds=1.0)
    doc = report.as_dict()
    assert report.sent == 50 and report.failed == 0
    assert doc["by_backend"] == {f"{SERVICE}_blue": {"2xx": 50}}
    assert doc["latency_ms"]["p50"] is not None and 0.9 <= report.seconds < 5
    router = make_router(lb.settings())
    router.flip(SERVICE, "green")
    router.close()
    lb.backends["green"].stop()  # nothing answers behind HAProxy: 503 from the balancer
    down = send(lb.url("/"), rps=20, seconds=0.5).as_dict()
    # HAProxy's own error page carries no `http-response` header: counted under "-"
    assert down["failed"] == 0 and down["by_backend"] == {"-": {"5xx": 10}}


@pytest.mark.parametrize("url", ["http://10.0.0.1/", "http://example.org/", "http://0.0.0.0/"])
def test_only_loopback_is_a_target(url: str) -> None:
    with pytest.raises(BadInput, match="loopback frontends only"):
        send(url, rps=1, seconds=1)


def test_bounds() -> None:
    with pytest.raises(BadInput, match="out of range"):
        send("http://127.0.0.1:1/", rps=5000, seconds=1)
