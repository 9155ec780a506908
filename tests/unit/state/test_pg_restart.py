"""Issue 20, 10: the PostgreSQL server restarts while a rollout holds its service's lock
(Ansible is running). The restart ends every session, and with them the advisory locks,
silently: the holder goes on. Its next write is refused (`Fenced`: its session, so its
lock, ended) and records nothing; another machine then takes the lock over with a new
epoch (the first run `abandoned`), patches, verifies and flips; traffic, store and audit
chain agree.

On a server of the test's own (tests/support/pg_server.py), never the shared cluster. The
real `Rollout` on the real PostgreSQL store, with fakes for Ansible, the probes and the
router (a lab run through the CLI takes minutes; the CLI's part, the exit and the message
of a refused holder, is the lab test of `pg_terminate_backend` in
tests/integration/test_team_mode.py).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from orchestrator.errors import Fenced
from orchestrator.rollout.runner import Rollout
from orchestrator.sides import Side
from orchestrator.state import LockHolder, StateStore
from orchestrator.state.registry import open_store, parse_state_url
from orchestrator.testing import FakePatcher, FakeRouter, fake_config, fake_tools
from tests.support import pg_server, postgres


@contextmanager
def machine(name: str, url: str, key: Path) -> Iterator[StateStore]:
    """One machine's bluegreen process: its own session, its own lock holder identity."""
    holder = LockHolder(holder=f"ci@{name}", pid=4242, hostname=f"{name}.example")
    current = LockHolder.current
    LockHolder.current = classmethod(lambda cls: holder)  # type: ignore[assignment,method-assign]
    store = open_store(parse_state_url(url), audit_key_file=key)
    try:
        yield store
    finally:
        store.close()
        LockHolder.current = current  # type: ignore[method-assign]


def test_a_server_restart_fences_the_holder_and_another_machine_takes_over(
        tmp_path: Path) -> None:
    key = tmp_path / "audit.key"
    config = fake_config(tmp_path, bake_seconds=0.02)
    router = FakeRouter()
    with pg_server.own_server() as server:
        postgres.migrated(server.url)
        seen: dict[str, object] = {}

        def restart_while_ansible_runs(service: str, side: Side) -> None:
            server.restart()
            seen["after_restart"] = postgres.snapshot(server.url)

        with machine("a", server.url, key) as store_a:
            rollout_a = Rollout(config, store_a, router, actor="ci",
                                tools=fake_tools(FakePatcher(during=restart_while_ansible_runs)))
            with pytest.raises(Fenced, match="session holding the lock of web .* ended"):
                rollout_a.start("web")
            # nothing of the holder after the restart: not the patch, not its end, not
            # the lock's release
            assert postgres.snapshot(server.url) == seen["after_restart"]
            assert router.flips == [] and router.memory["web"] == "blue"

        with machine("b", server.url, key) as store_b:
            run_a = store_b.list_runs(service="web")[-1]
            assert run_a.status == "running" and store_b.get_lock("web") is None
            side = store_b.get_side("web", "green")
            assert side is not None and side.state == "patching"  # never recorded as patched
            result = Rollout(config, store_b, router, actor="ci",
                             tools=fake_tools()).start("web")
            assert result.status == "done", result.message
            runs = {r.run_id: r for r in store_b.list_runs(service="web")}
            assert runs[run_a.run_id].status == "abandoned"
            assert runs[result.run_id].epoch == 2
            takeover = [r for r in store_b.audit_records("web") if r.command == "lock.takeover"]
            assert len(takeover) == 1 and takeover[0].after["epoch"] == 2
            # traffic, store and audit agree
            svc = store_b.get_service("web")
            assert svc is not None and svc.live_side == "green" and svc.pending_flip is None
            assert router.memory["web"] == router.persisted["web"] == "green"
            assert router.flips == [("web", "green")]  # one move, machine b's flip
            assert store_b.verify_audit().ok
    assert not server.running(), "the test's own server was left running"
