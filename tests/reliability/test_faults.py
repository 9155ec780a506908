"""Faults injected with the lab's own controls and real processes. Each ends in a
documented, consistent state (README "Reliability"), with a clear message and the right
exit code; none moves traffic to an unverified side."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from orchestrator.lab.lab import Lab
from tests.reliability.helpers import (
    FIGURES,
    WEB,
    fresh_web,
    journal_phases,
    start_cli,
    state_db,
    stop,
    wait_for,
)
from tests.support.cli import bluegreen, bluegreen_json
from tests.support.lab import (
    assert_consistent,
    fingerprints,
    hosts_of,
    no_steps_config,
    router_live,
    served_by,
    versions,
)

pytestmark = [pytest.mark.lab, pytest.mark.destructive]

VULNERABLE = {"demo-openssl": "3.0.11-1", "demo-web": "1.0.0"}


@contextmanager
def fault_case(name: str) -> Iterator[dict[str, object]]:
    """Records the fault's outcome for the summary table (ok only if the test passed)."""
    seen: dict[str, object] = {"code": None}
    try:
        yield seen
    except BaseException:
        FIGURES["faults"].append((name, seen["code"], "FAILED"))
        raise
    FIGURES["faults"].append((name, seen["code"], "ok"))


def _nothing_moved(lab: Lab, blue_before: dict[str, str]) -> None:
    assert router_live(lab, WEB) == "web_blue"
    assert served_by(lab, WEB) == "blue"
    assert fingerprints(lab, list(blue_before)) == blue_before


def test_standby_host_down_before_patching(lab: Lab) -> None:
    fresh_web(lab)
    config = no_steps_config(lab)
    blue_before = fingerprints(lab, hosts_of(lab, WEB, "blue"))
    with fault_case("standby host down before patching") as seen:
        lab.fault("web-green-1", "unreachable")
        try:
            proc = bluegreen(config, "rollout", WEB, "--yes")
        finally:
            lab.heal("web-green-1")
        seen["code"] = proc.returncode
        assert proc.returncode == 1, proc.stderr
        assert "unreachable over SSH: web-green-1" in proc.stderr and "fix:" in proc.stderr
        for h in hosts_of(lab, WEB, "green"):
            assert versions(lab, h) == VULNERABLE  # precheck refused: nothing patched
        _nothing_moved(lab, blue_before)
        assert_consistent(lab, config)


def test_standby_host_down_during_patching(lab: Lab) -> None:
    fresh_web(lab)
    config = no_steps_config(lab)
    blue_before = fingerprints(lab, hosts_of(lab, WEB, "blue"))
    with fault_case("standby host down during patching") as seen:
        proc = start_cli(config, "rollout", WEB, "--yes")
        try:
            wait_for(lambda: ("patch", "begin") in journal_phases(state_db(lab)), 60, "patch")
            lab.fault("web-green-2", "unreachable")  # serial 50%: green-2 is the 2nd batch
            out, err = proc.communicate(timeout=600)
        finally:
            stop(proc)
            lab.heal("web-green-2")
        seen["code"] = proc.returncode
        assert proc.returncode == 1, err
        assert "patching green failed" in err and "web-green-2" in err, err
        _nothing_moved(lab, blue_before)
        st = assert_consistent(lab, config)
        assert st["live"] == "blue" and not st["sides"]["green"]["verified_after_patch"]


def test_apt_repository_down(lab: Lab) -> None:
    fresh_web(lab)
    config = no_steps_config(lab)
    blue_before = fingerprints(lab, hosts_of(lab, WEB, "blue"))
    with fault_case("apt repository down") as seen:
        lab.stop_repo()
        try:
            proc = bluegreen(config, "rollout", WEB, "--yes")
        finally:
            lab.start_repo()
        seen["code"] = proc.returncode
        assert proc.returncode == 1, proc.stderr
        assert "patching green failed" in proc.stderr and "fix:" in proc.stderr, proc.stderr
        _nothing_moved(lab, blue_before)
        assert_consistent(lab, config)
        assert not lab.problems(lab.require())  # the repository is back


def test_probe_that_hangs_hits_its_deadline(lab: Lab, tmp_path: Path) -> None:
    fresh_web(lab)
    text = no_steps_config(lab).read_text()
    anchor = "    fixed_versions:\n      demo-openssl: 3.0.15-1\n"
    assert anchor in text
    hang = "    checks:\n    - {kind: command, argv: [sleep, '600'], timeout_s: 3, id: hangs}\n"
    config = tmp_path / "bluegreen.yml"
    config.write_text(text.replace(anchor, anchor + hang, 1))
    with fault_case("probe hangs (deadline)") as seen:
        started = time.monotonic()
        code, doc = bluegreen_json(config, "verify", WEB, "--side", "green", timeout=120)
        took = time.monotonic() - started
        seen["code"] = code
        assert code == 3, doc
        hung = [r for r in doc["results"] if r["check"] == "hangs"]
        assert hung and all(r["status"] != "pass" for r in hung), doc
        assert took < 60, f"verify took {took:.0f}s"
        # the failed verification is recorded: nothing will flip to green
        code, doc = bluegreen_json(config, "flip", WEB, "--to", "green", "--reason", "try")
        assert code == 3, doc
        assert served_by(lab, WEB) == "blue"
        assert_consistent(lab, no_steps_config(lab))


def test_haproxy_socket_gone_at_flip_time(lab: Lab) -> None:
    fresh_web(lab)
    config = no_steps_config(lab)
    sock = lab.paths.haproxy_socket
    away = sock.with_name("admin.sock.away")
    with fault_case("HAProxy admin socket gone at flip") as seen:
        proc = bluegreen(config, "rollout", WEB, "--yes", env={"BLUEGREEN_FAILPOINT": "verify:end"})
        assert proc.returncode == -signal.SIGKILL, proc.stderr
        sock.rename(away)
        try:
            resumed = bluegreen(config, "resume")
        finally:
            away.rename(sock)
        seen["code"] = resumed.returncode
        assert resumed.returncode == 1, resumed.stderr
        assert str(sock) in resumed.stderr and "fix:" in resumed.stderr, resumed.stderr
        assert router_live(lab, WEB) == "web_blue"
        st = assert_consistent(lab, config)  # the run ended failed; no lock left
        assert st["live"] == "blue"
        code, hist = bluegreen_json(config, "history", WEB)
        assert not [r for r in hist if r["command"] == "rollout.flip"]


def test_haproxy_restarted_during_bake(lab: Lab) -> None:
    fresh_web(lab)
    config = no_steps_config(lab)
    with fault_case("HAProxy restarted during bake") as seen:
        proc = start_cli(config, "rollout", WEB, "--yes", "--json")
        try:
            wait_for(
                lambda: ("bake", "begin") in journal_phases(state_db(lab)), 120, "bake", poll=0.05
            )
            time.sleep(2)
            lab.restart_haproxy()
            out, err = proc.communicate(timeout=120)
        finally:
            stop(proc)
        seen["code"] = proc.returncode
        # a restart keeps the persisted flip; the bake either passes or rolls back cleanly
        assert proc.returncode in (0, 4), (out, err)
        st = assert_consistent(lab, config)
        assert st["live"] == ("green" if proc.returncode == 0 else "blue"), st
        assert router_live(lab, WEB) == f"web_{st['live']}"


@contextmanager
def db_locked(db: Path) -> Iterator[subprocess.Popen[str]]:
    """Another process holding an exclusive write transaction on the state database."""
    code = (
        "import sqlite3, sys, time\n"
        "c = sqlite3.connect(sys.argv[1], isolation_level=None)\n"
        "c.execute('BEGIN EXCLUSIVE')\nprint('locked', flush=True)\ntime.sleep(120)\n"
    )
    holder = subprocess.Popen(
        [sys.executable, "-c", code, str(db)], stdout=subprocess.PIPE, text=True
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "locked"
        yield holder
    finally:
        os.kill(holder.pid, signal.SIGKILL)
        holder.communicate(timeout=30)


def _green_is_the_rollback_side(config: Path) -> None:
    """Blue live, green (untouched) the side live before the last flip: a rollback has
    somewhere to go, so it must write to the store."""
    for args in (("--to", "green", "--force"), ("--to", "blue")):
        code, doc = bluegreen_json(config, "flip", WEB, *args, "--reason", "fault setup")
        assert code == 0 and doc["changed"], doc
    code, st = bluegreen_json(config, "status", WEB)
    assert st["live"] == "blue" and st["rollback_to"] == "green", st


def test_state_database_locked_by_another_process(lab: Lab) -> None:
    fresh_web(lab)
    config = no_steps_config(lab)
    _green_is_the_rollback_side(config)
    blue_before = fingerprints(lab, hosts_of(lab, WEB, "blue"))
    with fault_case("state database locked") as seen, db_locked(state_db(lab)):
        for args in (
            ("rollback", WEB, "--reason", "INC-locked"),
            ("flip", WEB, "--to", "green", "--reason", "x", "--force"),
            ("rollout", WEB, "--yes"),
        ):
            proc = bluegreen(config, *args, timeout=120)
            seen["code"] = proc.returncode
            assert proc.returncode == 1, (args, proc.stderr)
            assert "locked" in proc.stderr and "fix:" in proc.stderr, proc.stderr
            _nothing_moved(lab, blue_before)
    assert_consistent(lab, config)


def test_state_directory_disk_full(lab: Lab, tmp_path: Path) -> None:
    fresh_web(lab)
    mount = tmp_path / "state"
    mount.mkdir()
    subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=1m,mode=0700", "tmpfs", str(mount)], check=True
    )
    try:
        text = no_steps_config(lab).read_text()
        old = f"  path: {lab.paths.root}/state/state.db"
        assert old in text
        config = tmp_path / "bluegreen.yml"
        config.write_text(text.replace(old, f"  path: {mount}/state.db"))
        _green_is_the_rollback_side(config)
        filler = mount / "filler"
        with open(filler, "wb", buffering=0) as f:
            try:
                while True:
                    f.write(b"\0" * 1024)
            except OSError:
                pass
        blue_before = fingerprints(lab, hosts_of(lab, WEB, "blue"))
        with fault_case("state directory disk full") as seen:
            for args in (
                ("rollback", WEB, "--reason", "INC-full"),
                ("rollout", WEB, "--yes"),
            ):
                proc = bluegreen(config, *args, timeout=120)
                seen["code"] = proc.returncode
                assert proc.returncode == 1, (args, proc.stderr)
                assert "full" in proc.stderr and "fix:" in proc.stderr, proc.stderr
                _nothing_moved(lab, blue_before)
            filler.unlink()
            assert_consistent(lab, config)
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def test_high_latency_to_one_standby_host(lab: Lab) -> None:
    """Default run: the verification gate over a 64 kbit/s link (~20 s); with
    BLUEGREEN_RELIABILITY_FULL=1 a whole rollout over it (~4 min)."""
    fresh_web(lab)
    config = no_steps_config(lab)
    blue_before = fingerprints(lab, hosts_of(lab, WEB, "blue"))
    full = os.environ.get("BLUEGREEN_RELIABILITY_FULL") == "1"
    name = "high latency to one host (slow)" + (": rollout" if full else ": verify")
    with fault_case(name) as seen:
        lab.fault("web-green-1", "slow")
        try:
            if full:
                proc = bluegreen(config, "rollout", WEB, "--yes", timeout=900)
                seen["code"] = proc.returncode
                assert proc.returncode == 0, proc.stderr
            else:
                # green is unpatched: its package checks fail; every other check must pass
                # on the slow host (slowness is not an error, nor a pass without data)
                code, doc = bluegreen_json(config, "verify", WEB, "--side", "green", timeout=300)
                seen["code"] = code
                assert code == 3, doc
                slow = [r for r in doc["results"] if r["host"] == "web-green-1"]
                assert slow and all(r["status"] in ("pass", "fail") for r in slow), slow
                assert all(r["status"] == "pass" for r in slow if "package" not in r["check"])
                assert any(r["status"] == "fail" for r in slow if "package" in r["check"])
        finally:
            lab.heal("web-green-1")
        st = assert_consistent(lab, config)
        assert st["live"] == ("green" if full else "blue")
        assert fingerprints(lab, list(blue_before)) == blue_before
