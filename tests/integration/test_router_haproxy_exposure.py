"""Progressive exposure and preview in a real HAProxy 2.6 on loopback (no lab hosts): the
exposure maps' lines route a share of new requests and every preview request to the
exposed backend, a reload and a restart keep the step, a config without the lines keeps
working and refuses an exposure clearly, and the kernel records each step."""

from __future__ import annotations

import sys
import urllib.request
from collections import Counter
from pathlib import Path

import pytest

_ROOT = str(Path(__file__).resolve().parents[2])
if _ROOT not in sys.path:
    sys.path.insert(0, _ROOT)

from orchestrator.errors import RouterError  # noqa: E402
from orchestrator.routers.base import PREVIEW_COOKIE, PREVIEW_HEADER, Exposure  # noqa: E402
from orchestrator.testing import temp_store  # noqa: E402
from orchestrator.traffic import (  # noqa: E402
    ExposeRequest,
    FlipRequest,
    expose_traffic,
    move_traffic,
)
from tests.support.haproxy_fixture import (  # noqa: E402
    HEADER,
    SERVICE,
    HAProxyLab,
    haproxy_and_router,
)
from tests.support.kernel import verified  # noqa: E402


def served(lab: HAProxyLab, count: int, *, preview: bool = False,
           cookie: str | None = None) -> Counter[str]:
    """Which backend answered each of `count` requests through the frontend (`preview`:
    with the preview header; `cookie`: with this Cookie header)."""
    seen: Counter[str] = Counter()
    headers = {PREVIEW_HEADER: "1"} if preview else {}
    if cookie is not None:
        headers["Cookie"] = cookie
    for _ in range(count):
        request = urllib.request.Request(lab.url("/"), headers=headers)
        with urllib.request.urlopen(request, timeout=2) as response:  # noqa: S310
            seen[str(response.headers.get(HEADER))] += 1
    return seen


def test_steps_preview_reload_and_the_kernel(tmp_path: Path) -> None:
    (tmp_path / "lb").mkdir()
    with haproxy_and_router(tmp_path / "lb", exposure=True) as (lab, router):
        assert router.exposure(SERVICE) is None
        assert served(lab, 20) == {"web_blue": 20}
        # 1. preview: only requests with the header go to green
        router.expose(SERVICE, "green", 0)
        assert router.exposure(SERVICE) == Exposure("green", 0)
        assert served(lab, 30) == {"web_blue": 30}
        assert served(lab, 20, preview=True) == {"web_green": 20}
        # ... or the preview cookie, among others; another value or name is no preview
        assert served(lab, 10, cookie=f"session=abc; {PREVIEW_COOKIE}=1; theme=dark") == \
            {"web_green": 10}
        assert served(lab, 10, cookie=f"{PREVIEW_COOKIE}=0; x_{PREVIEW_COOKIE}=1") == \
            {"web_blue": 10}
        # 2. 25 %: about a quarter of new requests (binomial, n=400: 15..35 % is 4.6 sigma)
        router.expose(SERVICE, "green", 25)
        seen = served(lab, 400)
        assert set(seen) == {"web_blue", "web_green"}
        assert 60 <= seen["web_green"] <= 140, seen
        assert served(lab, 10, preview=True) == {"web_green": 10}
        # 3. the step is on disk: a reload and a restart keep it
        assert "web web_green" in Path(lab.settings().exposed_map()).read_text()
        assert "web 25" in Path(lab.settings().percent_map()).read_text()
        lab.reload()
        assert router.exposure(SERVICE) == Exposure("green", 25)
        lab.restart()
        assert router.exposure(SERVICE) == Exposure("green", 25)
        assert 60 <= served(lab, 400)["web_green"] <= 140
        # 4. cleared: nothing goes to green, preview neither
        router.expose(SERVICE, None, 0)
        assert router.exposure(SERVICE) is None
        assert served(lab, 50) == {"web_blue": 50}
        assert served(lab, 10, preview=True) == {"web_blue": 10}
        assert served(lab, 10, cookie=f"{PREVIEW_COOKIE}=1") == {"web_blue": 10}
        lab.reload()
        assert router.exposure(SERVICE) is None
        # 5. through the kernel: recorded, then the flip to green ends the exposure
        with temp_store(tmp_path) as store:
            verified(store, "green")
            out = expose_traffic(store, router, ExposeRequest(
                service=SERVICE, side="green", percent=50, command="rollout.step",
                reason="step", actor="test"))
            assert out.changed and out.confirmed_by == ["map-readback",
                                                        "persisted-readback"]
            move_traffic(store, router, FlipRequest(
                service=SERVICE, command="flip", reason="promote", actor="test",
                to="green"))
            assert router.exposure(SERVICE) is None and router.live(SERVICE) == "green"
            assert served(lab, 30) == {"web_green": 30}
            assert store.verify_audit().ok


def test_a_config_without_the_exposure_lines_keeps_working(tmp_path: Path) -> None:
    with haproxy_and_router(tmp_path) as (lab, router):
        assert router.exposure(SERVICE) is None
        with pytest.raises(RouterError, match="no exposure map") as err:
            router.expose(SERVICE, "green", 5)
        assert err.value.hint and "bluegreen init" in err.value.hint
        router.expose(SERVICE, None, 0)  # nothing to take back
        router.flip(SERVICE, "green")
        assert lab.serving() == "green"
