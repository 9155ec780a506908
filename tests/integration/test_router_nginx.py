"""The nginx router against a real nginx 1.22 on loopback (no lab hosts needed): the same
contract the HAProxy router keeps (live, flip persisted and confirmed, health, counters,
drain, zero dropped requests during flips), and the failures nginx has of its own."""

from __future__ import annotations

import time
import urllib.error
from collections.abc import Iterator
from pathlib import Path

import pytest

from orchestrator.errors import FlipIncomplete, RouterError
from orchestrator.routers.nginx.router import NginxRouter
from orchestrator.routers.registry import make_router
from tests.support.haproxy_fixture import flips_under_requests, wait_until
from tests.support.nginx_fixture import SERVICE, NginxLab, running_nginx


@pytest.fixture
def lab(tmp_path: Path) -> Iterator[NginxLab]:
    with running_nginx(tmp_path) as running:
        yield running


@pytest.fixture
def router(lab: NginxLab) -> Iterator[NginxRouter]:
    made = make_router(lab.settings())
    assert isinstance(made, NginxRouter)
    yield made
    made.close()


def test_live_flip_persist_and_reload(lab: NginxLab, router: NginxRouter) -> None:
    assert router.live(SERVICE) == "blue"
    result = router.flip(SERVICE, "green")
    assert result.persisted and result.from_side == "blue" and result.to_side == "green"
    assert result.confirmed_by == ["nginx -t", "reload", "request"]
    assert lab.get("/") == ("web_green", "green")
    assert router.live(SERVICE) == "green"
    assert "default web_green;" in lab.live_file.read_text()
    # a reload (or restart) reads the file: the flip survives it
    lab.reload()  # the new workers read the file again; the old ones finish
    time.sleep(0.5)
    wait_until(lambda: lab.get("/") == ("web_green", "green"), 5, "green after the reload")
    assert lab.get("/") == ("web_green", "green")
    assert router.flip(SERVICE, "blue").from_side == "green"
    assert lab.get("/") == ("web_blue", "blue")


def test_a_config_nginx_refuses_moves_nothing_and_keeps_the_file(lab: NginxLab,
                                                                    router: NginxRouter) -> None:
    before = lab.live_file.read_text()
    broken = lab.dir / "broken.conf"
    broken.write_text(lab.conf.read_text().replace("access_log off;",
                                                   "access_log off;\n    bogus_directive on;"))
    bad = make_router(lab.settings(conf=str(broken)))
    with pytest.raises(RouterError, match="nginx -t -q` failed, nothing moved") as caught:
        bad.flip(SERVICE, "green")
    assert not isinstance(caught.value, FlipIncomplete)
    assert lab.live_file.read_text() == before
    assert lab.get("/") == ("web_blue", "blue") and router.live(SERVICE) == "blue"
    # an upstream nginx does not have passes `nginx -t` (proxy_pass takes a variable):
    # health (which the kernel asks before every flip) names it
    typo = make_router(lab.settings(upstream_template="{service}-{side}"))
    with pytest.raises(RouterError, match="nginx has no `upstream web-green`"):
        typo.health(SERVICE, "green")


def test_a_stopped_nginx_is_refused_and_the_file_put_back(tmp_path: Path) -> None:
    with running_nginx(tmp_path) as lab:
        settings = lab.settings()
        before = lab.live_file.read_text()
    router = make_router(settings)  # nginx is gone now
    with pytest.raises(RouterError, match="reload` failed, nothing moved"):
        router.flip(SERVICE, "green")
    assert lab.live_file.read_text() == before
    with pytest.raises(RouterError, match="cannot read the live side"):
        router.live(SERVICE)


def test_no_confirm_header_is_a_flip_incomplete(lab: NginxLab) -> None:
    router = make_router(lab.settings(confirm_header="X-Not-Set", timeout=0.5))
    with pytest.raises(FlipIncomplete) as caught:
        router.flip(SERVICE, "green")
    assert caught.value.persisted and not caught.value.confirmed
    assert lab.get("/") == ("web_green", "green")  # moved: the kernel records the problem


def test_health_counters_and_drain(lab: NginxLab, router: NginxRouter) -> None:
    health = router.health(SERVICE, "green")
    assert health.healthy and health.backend == "web_green"
    lab.backends["green"].stop()
    assert not router.health(SERVICE, "green").healthy
    lab.backends["green"].start()
    for _ in range(5):
        lab.get("/")
    blue = router.counters(SERVICE, "blue")
    assert blue is not None and blue.responses >= 5 and blue.errors_5xx == 0
    assert router.counters(SERVICE, "green") == type(blue)(0, 0)
    lab.backends["blue"].stop()
    with pytest.raises(urllib.error.HTTPError):
        lab.get("/")
    # nginx logs a request after it answered it: the line may come a moment later
    wait_until(lambda: (router.counters(SERVICE, "blue") or blue).errors_5xx >= 1, 5,
               "the 502 in the access log")
    lab.backends["blue"].start()
    router.flip(SERVICE, "green")
    assert router.drain(SERVICE, "blue", 5.0).drained


def test_zero_dropped_requests_during_flips(lab: NginxLab, router: NginxRouter) -> None:
    served, failures = flips_under_requests(
        lambda: lab.get("/"), lambda side: router.flip(SERVICE, side), flips=6, pause=0.1,
        seconds=20, most=3000)
    assert failures == []
    assert served["blue"] > 0 and served["green"] > 0
    wait_until(lambda: router.live(SERVICE) == "blue", 5, "blue live")


def test_readiness_passes_and_names_each_mistake(lab: NginxLab, router: NginxRouter) -> None:
    """doctor's nginx checks against the real nginx: the fixture's config (as the README
    says) passes; a config without `always`, with the access log in another format and a
    pid file nginx does not have, and a live file nginx never includes, each fail."""
    good = {c.name: c for c in router.readiness([SERVICE])}
    assert set(good) == {"router config", "router live file", "router include",
                         "router confirm header", "router access log", "router master pid"}
    assert all(c.ok for c in good.values()), [c for c in good.values() if not c.ok]
    assert str(lab.process.pid) in good["router master pid"].detail
    text = lab.conf.read_text()
    broken = lab.dir / "broken.conf"
    broken.write_text(text.replace(" always;", ";")
                      .replace("'$proxy_host $status ", "'$status $proxy_host ")
                      .replace(f"pid {lab.dir}/nginx.pid;", f"pid {lab.dir}/none.pid;"))
    elsewhere = lab.dir / "elsewhere" / "live.conf"
    elsewhere.parent.mkdir()
    elsewhere.write_text(lab.live_file.read_text())
    bad = make_router(lab.settings(conf=str(broken), live_file=str(elsewhere)))
    checks = {c.name: c for c in bad.readiness([SERVICE])}  # type: ignore[attr-defined]
    assert checks["router config"].ok and checks["router live file"].ok
    failed = {name for name, c in checks.items() if c.ok is False}
    assert failed == {"router include", "router confirm header", "router access log",
                      "router master pid"}, checks
    assert f"include {elsewhere};" in checks["router include"].fix
    assert "without `always`" in checks["router confirm header"].detail
    assert "does not begin `$proxy_host $status`" in checks["router access log"].detail
    assert "none.pid" in checks["router master pid"].detail
