"""The HAProxy router against a real HAProxy 2.6 on loopback (no lab hosts needed)."""

from __future__ import annotations

import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

# `tests` is not an installed package; make `tests.support` importable from any cwd.
_ROOT = str(Path(__file__).resolve().parents[2])
if _ROOT not in sys.path:
    sys.path.insert(0, _ROOT)

from orchestrator.errors import FlipIncomplete, RouterError  # noqa: E402
from orchestrator.routers.haproxy.router import HAProxyRouter  # noqa: E402
from orchestrator.routers.haproxy.settings import SSHTarget  # noqa: E402
from orchestrator.routers.haproxy.transport import UnixSocketTransport  # noqa: E402
from orchestrator.routers.registry import make_router  # noqa: E402
from tests.support.haproxy_fixture import (  # noqa: E402
    SERVICE,
    HAProxyLab,
    flips_under_requests,
    haproxy_and_router,
)


@pytest.fixture
def both(tmp_path: Path) -> Iterator[tuple[HAProxyLab, HAProxyRouter]]:
    with haproxy_and_router(tmp_path) as running:
        yield running


@pytest.fixture
def lab(both: tuple[HAProxyLab, HAProxyRouter]) -> HAProxyLab:
    return both[0]


@pytest.fixture
def router(both: tuple[HAProxyLab, HAProxyRouter]) -> HAProxyRouter:
    return both[1]


def test_live_is_blue_at_start(lab: HAProxyLab, router: HAProxyRouter) -> None:
    assert router.live(SERVICE) == "blue"
    assert lab.serving() == "blue"


def test_health_reports_servers(router: HAProxyRouter) -> None:
    health = router.health(SERVICE, "green")
    assert health.backend == "web_green"
    assert [(s.name, s.status) for s in health.servers] == [("green1", "UP")]
    assert health.healthy


def test_flip_moves_traffic_and_persists(lab: HAProxyLab, router: HAProxyRouter) -> None:
    result = router.flip(SERVICE, "green")

    assert result.from_side == "blue" and result.to_side == "green"
    assert result.confirmed_by == ["map-readback", "persisted-readback", "request"]
    assert result.persisted
    assert result.seconds < 1.0
    assert router.live(SERVICE) == "green"
    assert lab.serving() == "green"
    assert lab.map_file.read_text() == "web web_green\n"
    assert lab.map_file.stat().st_mode & 0o777 == 0o644
    state = lab.server_state_file.read_text()
    assert state.startswith("1\n# be_id") and "web_green" in state

    lab.reload()
    assert lab.serving() == "green"
    assert router.live(SERVICE) == "green"

    lab.restart()
    assert lab.serving() == "green"
    assert router.live(SERVICE) == "green"

    back = router.flip(SERVICE, "blue")
    assert back.from_side == "green"
    lab.restart()
    assert lab.serving() == "blue"


def test_flip_writes_every_line_haproxy_holds(lab: HAProxyLab, router: HAProxyRouter) -> None:
    """The map file is written from HAProxy's memory (`show map`), not edited: a line only
    in the file (never loaded) is not kept, every line HAProxy routes by is."""
    lab.admin(f"add map {lab.map_file} api api_green")
    lab.map_file.write_text("# edited by hand\nweb web_blue\nstale stale_blue\n")
    router.flip(SERVICE, "green")
    assert lab.map_file.read_text() == "web web_green\napi api_green\n"
    assert not (lab.dir / "bluegreen.map.lock").read_text()  # the lock file stays empty


def test_concurrent_persists_never_lose_a_line(lab: HAProxyLab) -> None:
    """Two services changing and persisting at once (a wave with max_parallel 2, or a
    rollback of one during a rollout of the other): the file always ends as HAProxy's map."""
    lab.admin(f"add map {lab.map_file} api api_blue")
    errors: list[BaseException] = []

    def churn(key: str) -> None:
        own = make_router(lab.settings())
        try:
            for i in range(25):
                value = f"{key}_{'green' if i % 2 == 0 else 'blue'}"
                lab.admin(f"set map {lab.map_file} {key} {value}")
                own.transport.persist_map(  # type: ignore[attr-defined]
                    str(lab.map_file), str(lab.server_state_file), f"{key} {value}")
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)
        finally:
            own.close()

    workers = [threading.Thread(target=churn, args=(key,)) for key in ("web", "api")]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(timeout=60)
    assert errors == []
    in_memory = sorted(
        " ".join(line.split()[1:]) for line in lab.admin(f"show map {lab.map_file}").splitlines()
        if line.strip()
    )
    assert sorted(lab.map_file.read_text().splitlines()) == in_memory == [
        "api api_green", "web web_green"]


def test_persist_failure_after_the_change_is_a_flip_incomplete(
    lab: HAProxyLab, router: HAProxyRouter
) -> None:
    saved = lab.map_file.read_text()
    lab.map_file.unlink()
    lab.map_file.mkdir()  # the file cannot be replaced now (as root, unlike a chmod)
    try:
        with pytest.raises(FlipIncomplete) as caught:
            router.flip(SERVICE, "green")
        assert caught.value.moved and not caught.value.persisted
        assert "3 times" in caught.value.message
        assert router.live(SERVICE) == "green" and lab.serving() == "green"
    finally:
        lab.map_file.rmdir()
        lab.map_file.write_text(saved)


class ReloadBeforeWriting(UnixSocketTransport):
    """The load balancer reloads once, after the map to persist was read (`show map`) and
    before the file is written: memory goes back to the old file, the file gets the new
    line (issue 20, item 5)."""

    def __init__(self, lab: HAProxyLab) -> None:
        super().__init__(str(lab.admin_socket), 2.0)
        self.lab, self.reloaded = lab, False

    def write_atomic(self, path: str, text: str, mode: int = 0o644) -> None:
        if path == str(self.lab.map_file) and not self.reloaded:
            self.reloaded = True
            self.lab.reload()
        super().write_atomic(path, text, mode)


def test_a_reload_between_set_and_persist_is_no_move(lab: HAProxyLab, tmp_path: Path) -> None:
    from orchestrator.state import AuditEntryInput
    from orchestrator.testing import patched, temp_store
    from orchestrator.traffic import FlipRequest, move_traffic

    router = HAProxyRouter(lab.settings(), ReloadBeforeWriting(lab))
    with pytest.raises(FlipIncomplete) as caught:
        router.flip(SERVICE, "green")
    assert not caught.value.moved and not caught.value.persisted
    assert "web_blue in memory" in caught.value.message
    assert "routes it to web_green" in caught.value.message
    assert lab.serving() == "blue" and lab.map_file.read_text() == "web web_green\n"
    # through the kernel: recorded as no move, the live side persisted again
    lab.map_file.write_text("web web_blue\n")
    router = HAProxyRouter(lab.settings(), ReloadBeforeWriting(lab))
    setup = AuditEntryInput(actor="test", command="setup")
    with temp_store(tmp_path) as store:
        patched(store, SERVICE, "green", "v2", audit=setup)
        store.record_verification(SERVICE, "green", True, "v2", "ok", audit=setup, hosts={})
        with pytest.raises(RouterError) as moved:
            move_traffic(store, router, FlipRequest(service=SERVICE, command="flip",
                                                    reason="test", actor="op", to="green"))
        assert not isinstance(moved.value, FlipIncomplete)
        assert "traffic is on blue" in moved.value.message
        assert "written again for blue" in moved.value.message
        svc = store.get_service(SERVICE)
        assert svc is not None and svc.live_side == "blue" and svc.pending_flip is None
        assert svc.flip_problem is None and store.verify_audit().ok
    assert lab.serving() == "blue" and lab.map_file.read_text() == "web web_blue\n"
    lab.reload()
    assert lab.serving() == "blue"


def test_confirm_failure_after_persisting_is_a_flip_incomplete(lab: HAProxyLab) -> None:
    from tests.support.haproxy_fixture import free_port

    blind = make_router(lab.settings(frontends={SERVICE: f"http://127.0.0.1:{free_port()}/"}))
    with pytest.raises(FlipIncomplete) as caught:
        blind.flip(SERVICE, "green")
    assert caught.value.persisted and not caught.value.confirmed
    assert lab.map_file.read_text() == "web web_green\n" and lab.serving() == "green"


def test_flip_to_a_down_side_is_refused(lab: HAProxyLab, router: HAProxyRouter) -> None:
    lab.backends["green"].stop()
    lab.wait_status("green", "DOWN")

    with pytest.raises(RouterError, match="no server of web_green is UP"):
        router.flip(SERVICE, "green")

    assert router.live(SERVICE) == "blue"
    assert lab.serving() == "blue"
    assert lab.map_file.read_text() == "web web_blue\n"
    assert not router.health(SERVICE, "green").healthy


def test_error_reply_raises(lab: HAProxyLab) -> None:
    wrong = make_router(lab.settings(map_file=str(lab.dir / "other.map")))
    with pytest.raises(RouterError, match="Unknown map identifier"):
        wrong.live(SERVICE)
    with pytest.raises(RouterError, match="Unknown map identifier"):
        wrong.flip(SERVICE, "green")
    assert lab.serving() == "blue"


def test_unknown_backend_raises(lab: HAProxyLab) -> None:
    wrong = make_router(lab.settings(backend_template="{service}-{side}-pool"))
    with pytest.raises(RouterError, match="no backend 'web-green-pool'"):
        wrong.flip(SERVICE, "green")
    with pytest.raises(RouterError, match="neither"):
        wrong.live(SERVICE)


def test_missing_socket_fails_fast_after_retries(lab: HAProxyLab) -> None:
    gone = make_router(lab.settings(socket=f"unix://{lab.dir}/missing.sock"))
    started = time.monotonic()
    with pytest.raises(RouterError, match="after 3 attempts"):
        gone.live(SERVICE)
    assert time.monotonic() - started < 5


def test_refused_tcp_fails_fast(lab: HAProxyLab) -> None:
    from tests.support.haproxy_fixture import free_port

    gone = make_router(lab.settings(socket=f"tcp://127.0.0.1:{free_port()}"))
    started = time.monotonic()
    with pytest.raises(RouterError, match="ConnectionRefusedError"):
        gone.live(SERVICE)
    assert time.monotonic() - started < 5


def test_socket_without_admin_level_is_refused(lab: HAProxyLab) -> None:
    user = make_router(lab.settings(socket=f"unix://{lab.user_socket}"))
    assert user.live(SERVICE) == "blue"  # reading is fine
    with pytest.raises(RouterError, match="permission denied.*level admin"):
        user.flip(SERVICE, "green")
    assert lab.serving() == "blue"
    assert lab.map_file.read_text() == "web web_blue\n"


def test_absent_entry_is_an_error_and_flip_adds_it(lab: HAProxyLab, router: HAProxyRouter) -> None:
    lab.admin(f"del map {lab.map_file} {SERVICE}")
    with pytest.raises(RouterError, match="no entry"):
        router.live(SERVICE)
    result = router.flip(SERVICE, "green")
    assert result.from_side is None
    assert router.live(SERVICE) == "green"
    assert lab.map_file.read_text() == "web web_green\n"


def test_drain_returns_sessions_left(router: HAProxyRouter) -> None:
    result = router.drain(SERVICE, "blue", deadline_s=1.0)
    assert result.drained and result.sessions_left == 0
    assert result.seconds < 1.0


def test_counters_give_the_window_mean_response_time(lab: HAProxyLab,
                                                     router: HAProxyRouter) -> None:
    """The counters path's latency (no Prometheus) on a real HAProxy: `show stat`'s average
    read before and after 40 requests answered 300 ms late gives their own mean (the
    average itself is diluted by the earlier fast ones), then the fast ones' again."""
    from concurrent.futures import ThreadPoolExecutor

    from orchestrator.analysis.queries import rtime_sum, window_mean

    def window(requests: int) -> float:
        before = router.counters(SERVICE, "blue")
        with ThreadPoolExecutor(8) as pool:
            assert all(side == "blue" for _, side in pool.map(lambda _: lab.get("/", 5),
                                                               range(requests)))
        after = router.counters(SERVICE, "blue")
        assert before is not None and after is not None
        assert before.response_ms is not None and after.response_ms is not None
        assert after.responses - before.responses == requests
        mean = window_mean(rtime_sum(before.response_ms, before.responses),
                           rtime_sum(after.response_ms, after.responses),
                           before.responses, after.responses)
        assert mean is not None
        return mean / 1000

    window(40)
    lab.backends["blue"].slow(0.3)
    slow = window(40)
    assert 0.28 <= slow <= 0.6, slow
    lab.backends["blue"].slow(0.0)
    fast = window(40)
    assert fast < 0.1, fast  # HAProxy's average itself still says about 0.1 s here


def test_zero_dropped_requests_during_flips(lab: HAProxyLab, router: HAProxyRouter) -> None:
    served, failures = flips_under_requests(
        lambda: lab.get("/"), lambda side: router.flip(SERVICE, side), flips=10, pause=0.05,
        seconds=10, most=2000)
    assert failures == []
    assert served["blue"] > 0 and served["green"] > 0
    assert router.live(SERVICE) == "blue"


# -- the SSH transport, against a private sshd on loopback -----------------------------


@pytest.fixture
def sshd(tmp_path: Path) -> Iterator[dict[str, str | int]]:
    from tests.support.haproxy_fixture import free_port, wait_until

    keys = tmp_path / "ssh"
    keys.mkdir()
    for name in ("host", "user"):
        subprocess.run(
            ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(keys / name)],
            check=True,
            timeout=10,
        )
    (keys / "authorized_keys").write_text((keys / "user.pub").read_text())
    port = free_port()
    host_pub = (keys / "host.pub").read_text().split()
    (keys / "known_hosts").write_text(f"[127.0.0.1]:{port} {host_pub[0]} {host_pub[1]}\n")
    (keys / "empty_known_hosts").write_text("")
    user_pub = (keys / "user.pub").read_text().split()
    (keys / "wrong_known_hosts").write_text(f"[127.0.0.1]:{port} {user_pub[0]} {user_pub[1]}\n")
    (keys / "sshd_config").write_text(
        f"Port {port}\nListenAddress 127.0.0.1\nHostKey {keys / 'host'}\n"
        f"AuthorizedKeysFile {keys / 'authorized_keys'}\nPidFile {keys / 'sshd.pid'}\n"
        "StrictModes no\nUsePAM no\nPasswordAuthentication no\nPermitRootLogin prohibit-password\n"
    )
    process = subprocess.Popen(
        ["/usr/sbin/sshd", "-D", "-e", "-f", str(keys / "sshd_config")],
        stdout=subprocess.DEVNULL,
        stderr=(keys / "sshd.log").open("wb"),
        start_new_session=True,
    )
    try:

        def listening() -> bool:
            assert process.poll() is None, (keys / "sshd.log").read_text()
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return True

        wait_until(listening, 10, "sshd to listen")
        yield {
            "port": port,
            "key_file": str(keys / "user"),
            "known_hosts": str(keys / "known_hosts"),
            "empty_known_hosts": str(keys / "empty_known_hosts"),
            "wrong_known_hosts": str(keys / "wrong_known_hosts"),
        }
    finally:
        process.terminate()
        process.wait(timeout=10)


def test_ssh_transport_flips_and_persists_remotely(lab: HAProxyLab, sshd: dict[str, Any]) -> None:
    ssh = SSHTarget(
        host="127.0.0.1",
        port=sshd["port"],
        user="root",
        key_file=sshd["key_file"],
        known_hosts=sshd["known_hosts"],
    )
    remote = make_router(lab.settings(ssh=ssh))
    try:
        assert remote.live(SERVICE) == "blue"
        result = remote.flip(SERVICE, "green")
        assert result.persisted and result.confirmed_by == ["map-readback", "persisted-readback",
                                                            "request"]
        assert lab.map_file.read_text() == "web web_green\n"
        assert lab.map_file.stat().st_mode & 0o777 == 0o644
        assert "web_green" in lab.server_state_file.read_text()
        lab.restart()
        assert lab.serving() == "green"
        assert remote.live(SERVICE) == "green"  # reconnects the socket, reuses the SSH session
    finally:
        remote.close()

    missing = make_router(lab.settings(ssh=ssh, socket=f"unix://{lab.dir}/missing.sock"))
    started = time.monotonic()
    with pytest.raises(RouterError, match="after 3 attempts"):
        missing.live(SERVICE)
    assert time.monotonic() - started < 5
    missing.close()


@pytest.mark.parametrize(
    ("known_hosts", "message"),
    [("empty_known_hosts", "not found in known_hosts"), ("wrong_known_hosts", "host key mismatch")],
)
def test_ssh_host_key_problems_are_refused_at_once(
    lab: HAProxyLab, sshd: dict[str, Any], known_hosts: str, message: str
) -> None:
    ssh = SSHTarget(
        host="127.0.0.1",
        port=sshd["port"],
        user="root",
        key_file=sshd["key_file"],
        known_hosts=sshd[known_hosts],
    )
    remote = make_router(lab.settings(ssh=ssh))
    with pytest.raises(RouterError, match=message) as caught:
        remote.live(SERVICE)
    assert "attempts" not in str(caught.value)  # never retried
    remote.close()


def test_ssh_wrong_key_is_refused_at_once(lab: HAProxyLab, sshd: dict[str, Any]) -> None:
    ssh = SSHTarget(
        host="127.0.0.1",
        port=sshd["port"],
        user="root",
        key_file=sshd["key_file"].replace("user", "host"),  # a key sshd does not accept
        known_hosts=sshd["known_hosts"],
    )
    remote = make_router(lab.settings(ssh=ssh))
    with pytest.raises(RouterError, match="authentication failed") as caught:
        remote.live(SERVICE)
    assert "attempts" not in str(caught.value)
    remote.close()
