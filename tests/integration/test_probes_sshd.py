"""The probe engine against a real throwaway sshd on 127.0.0.1 (no mocks).

Needs root, /usr/sbin/sshd (openssh-server) and ssh-keygen/ssh (openssh-client).
"""

from __future__ import annotations

import os
import secrets
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

# `tests` is not an installed package; make `tests.support` importable from any cwd.
ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from orchestrator.probes import ProbeTarget, parse_checks, run_checks, run_suite  # noqa: E402
from tests.support.sshd_fixture import SshdServer, free_port, running_sshd  # noqa: E402

SUITE = ROOT / "tests" / "data" / "suites" / "test_thirdparty_style.py"


@pytest.fixture(scope="module")
def sshd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SshdServer]:
    with running_sshd(tmp_path_factory.mktemp("sshd")) as server:
        yield server


@pytest.fixture
def target(sshd: SshdServer) -> ProbeTarget:
    return ProbeTarget(
        name="lab1",
        address=sshd.address,
        port=sshd.port,
        known_hosts=str(sshd.known_hosts),
        key_file=str(sshd.client_key),
    )


def _one(report, check_id):  # type: ignore[no-untyped-def]
    found = [r for r in report.results if r.check == check_id]
    assert len(found) == 1, report.results
    return found[0]


def test_package_pass_fail_and_not_installed(target: ProbeTarget) -> None:
    checks = parse_checks(
        [
            {"kind": "package", "name": "bash", "fixed": "1.0"},
            {
                "kind": "package",
                "name": "bash",
                "fixed": "99",
                "id": "bash-99",
                "advisory": "DEMO-2026-01",
                "cves": ["CVE-2026-0001"],
            },
            {"kind": "package", "name": "bgtest-not-a-package", "fixed": "1.0"},
        ]
    )
    report = run_checks([target], checks, deadline_s=30)
    ok = _one(report, "package:bash")
    assert ok.status == "pass", ok
    bad = _one(report, "bash-99")
    assert bad.status == "fail"
    assert "< fixed 99" in bad.evidence and "(DEMO-2026-01: CVE-2026-0001)" in bad.evidence
    assert bad.evidence.split()[1][0].isdigit()  # the installed version is named
    missing = _one(report, "package:bgtest-not-a-package")
    assert missing.status == "fail" and "not installed" in missing.evidence
    assert not report.ok and len(report.failures) == 2


def test_file_command_sshd_sysctl(target: ProbeTarget, sshd: SshdServer) -> None:
    checks = parse_checks(
        [
            {"kind": "file", "path": "/etc/passwd", "mode": "0644", "owner": "root"},
            {"kind": "file", "path": "/etc/passwd", "mode": 0o600, "id": "passwd-600"},
            {"kind": "command", "argv": ["echo", "hello; world"], "stdout_regex": "^hello; world$"},
            {"kind": "command", "argv": ["false"], "id": "false"},
            {
                "kind": "sshd",
                "config": str(sshd.config),
                "settings": {"PasswordAuthentication": False},
            },
            {"kind": "sysctl", "values": {"kernel.ostype": "Linux"}},
        ]
    )
    report = run_checks([target], checks, deadline_s=30)
    assert _one(report, "file:/etc/passwd").status == "pass"
    wrong = _one(report, "passwd-600")
    assert wrong.status == "fail" and "mode 0644 != 0600" in wrong.evidence
    assert _one(report, "command:echo").status == "pass"  # shlex.join kept ';' literal
    assert _one(report, "false").status == "fail"
    assert _one(report, "sshd:passwordauthentication").status == "pass"
    assert _one(report, "sysctl:kernel.ostype").status == "pass"


def test_listening_allow_list(target: ProbeTarget, sshd: SshdServer) -> None:
    port = free_port()
    listener = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import socket,time,sys; s=socket.socket(); "
            "s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1); "
            f"s.bind(('127.0.0.1', {port})); s.listen(); print('up', flush=True); time.sleep(60)",
        ],
        stdout=subprocess.PIPE,
    )
    try:
        assert listener.stdout is not None and listener.stdout.readline().strip() == b"up"
        checks = parse_checks([{"kind": "listening", "ports": [sshd.port], "allow": []}])
        report = run_checks([target], checks, deadline_s=20)
        assert _one(report, f"listening:{sshd.port}").status == "pass"
        extra = _one(report, "listening:allow-list")
        assert extra.status == "fail"
        assert f"port {port} on 127.0.0.1" in extra.evidence
        assert f"pid {listener.pid}" in extra.evidence
    finally:
        listener.kill()
        listener.wait(timeout=5)


def test_stale_processes(target: ProbeTarget) -> None:
    lib = Path(f"/usr/local/lib/bgtest-{secrets.token_hex(4)}.so")
    lib.parent.mkdir(parents=True, exist_ok=True)
    proc: subprocess.Popen[bytes] | None = None
    try:
        shutil.copyfile(sys.executable, lib)  # any file; the point is the mapping
        proc = subprocess.Popen(
            [
                sys.executable,
                "-c",
                "import mmap,sys,time; f=open(sys.argv[1],'rb'); "
                "m=mmap.mmap(f.fileno(), 0, prot=mmap.PROT_READ); "
                "print('mapped', flush=True); time.sleep(120)",
                str(lib),
            ],
            stdout=subprocess.PIPE,
        )
        assert proc.stdout is not None and proc.stdout.readline().strip() == b"mapped"
        lib.unlink()  # "upgrade": the old file is gone, the process still runs it
        lib.write_bytes(b"new version\n")
        only_ours = {"kind": "stale-processes", "prefixes": [str(lib)], "id": "ours"}
        checks = parse_checks([{"kind": "stale-processes"}, only_ours])
        report = run_checks([target], checks, deadline_s=30)
        default = _one(report, "stale-processes")
        assert default.status == "fail"
        assert f"pid {proc.pid}" in default.evidence and str(lib) in default.evidence
        assert "python" in default.evidence  # the comm of the process
        assert _one(report, "ours").status == "fail"

        proc.kill()
        proc.wait(timeout=5)
        proc = None
        report = run_checks([target], checks, deadline_s=30)
        assert str(lib) not in _one(report, "stale-processes").evidence
        assert _one(report, "ours").status == "pass"
    finally:
        if proc is not None:
            proc.kill()
            proc.wait(timeout=5)
        lib.unlink(missing_ok=True)


def test_wrong_host_key_fails_every_check(target: ProbeTarget, tmp_path: Path) -> None:
    other = tmp_path / "other_key"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(other)], check=True)
    kind, key = (tmp_path / "other_key.pub").read_text().split()[:2]
    wrong = tmp_path / "known_hosts"
    wrong.write_text(f"[{target.address}]:{target.port} {kind} {key}\n")
    bad = ProbeTarget(
        "lab1", target.address, str(wrong), port=target.port, key_file=target.key_file
    )
    checks = parse_checks(
        [
            {"kind": "package", "name": "bash", "fixed": "1.0"},
            {"kind": "file", "path": "/etc/passwd"},
        ]
    )
    report = run_checks([bad], checks, deadline_s=20)
    assert not report.ok
    assert len(report.results) == 2
    for r in report.results:
        assert r.status == "error"
        assert "host key mismatch" in r.evidence and str(wrong) in r.evidence

    empty = tmp_path / "empty_known_hosts"
    empty.write_text("")
    unknown = ProbeTarget(
        "lab1", target.address, str(empty), port=target.port, key_file=target.key_file
    )
    report = run_checks([unknown], checks, deadline_s=20)
    assert all(r.status == "error" and "host key unknown" in r.evidence for r in report.results), (
        report.results
    )


def test_unreachable_host_fails_with_reason(target: ProbeTarget) -> None:
    dead = ProbeTarget(
        "dead",
        "127.0.0.1",
        target.known_hosts,
        port=free_port(),
        key_file=target.key_file,
        connect_timeout=2,
    )
    checks = parse_checks([{"kind": "file", "path": "/etc/passwd"}])
    report = run_checks([target, dead], checks, deadline_s=20)
    by_host = report.by_host()
    assert by_host["lab1"][0].status == "pass"
    assert by_host["dead"][0].status == "error"
    assert "unreachable" in by_host["dead"][0].evidence
    assert not report.ok


def test_deadline_is_enforced(target: ProbeTarget) -> None:
    checks = parse_checks(
        [
            {"kind": "command", "argv": ["sleep", "30"]},
            {"kind": "file", "path": "/etc/passwd", "id": "after-sleep"},
        ]
    )
    t0 = time.monotonic()
    # one channel: checks of the host run one after the other
    report = run_checks([target], checks, deadline_s=3, channels=1)
    took = time.monotonic() - t0
    assert took < 5.5, took
    assert not report.ok
    sleep = _one(report, "command:sleep")
    assert sleep.status == "error" and "deadline exceeded after 3 s" in sleep.evidence
    assert _one(report, "after-sleep").status == "error"
    # several channels (the default): a slow check no longer starves the others
    report = run_checks([target], checks, deadline_s=3)
    assert _one(report, "command:sleep").status == "error"
    assert _one(report, "after-sleep").status == "pass"


def test_no_checks_is_not_ok(target: ProbeTarget) -> None:
    report = run_checks([target], [], deadline_s=10)
    assert not report.ok
    assert report.results[0].status == "error"


def test_user_suite_runner(target: ProbeTarget) -> None:
    report = run_suite(SUITE, [target], deadline_s=120)
    names = sorted(r.check for r in report.results)
    assert names == [
        "suite:test_thirdparty_style.py::test_shadow_mode",
        "suite:test_thirdparty_style.py::test_sshd_process_running",
        "suite:test_thirdparty_style.py::test_telnet_not_installed",
    ], report.results
    assert report.ok, report.failures
    assert set(report.by_host()) == {"lab1"}


def test_user_suite_with_wrong_host_key_fails(target: ProbeTarget, tmp_path: Path) -> None:
    empty = tmp_path / "known_hosts"
    empty.write_text("")
    bad = ProbeTarget(
        "lab1", target.address, str(empty), port=target.port, key_file=target.key_file
    )
    report = run_suite(SUITE, [bad], deadline_s=120)
    assert not report.ok
    assert report.results and all(r.status != "pass" for r in report.results)


def render_ssh_config(t: ProbeTarget) -> str:
    """A strict ssh_config for plain `pytest --hosts=ssh://NAME` (testinfra's ssh backend)."""
    return (
        f"Host {t.name}\n  HostName {t.address}\n  Port {t.port}\n  User {t.user}\n"
        f'  UserKnownHostsFile "{t.known_hosts}"\n  StrictHostKeyChecking yes\n'
        f'  BatchMode yes\n  IdentitiesOnly yes\n  IdentityFile "{t.key_file}"\n'
    )


def test_same_suite_runs_under_plain_pytest(target: ProbeTarget, tmp_path: Path) -> None:
    cfg = tmp_path / "ssh_config"
    cfg.write_text(render_ssh_config(target))
    proc = subprocess.run(
        [
            str(Path(sys.executable).parent / "pytest"),
            str(SUITE),
            "--hosts=ssh://lab1",
            f"--ssh-config={cfg}",
            "-p",
            "no:cacheprovider",
            "-c",
            os.devnull,
            f"--rootdir={SUITE.parent}",
            "-q",
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "3 passed" in proc.stdout


def test_sshd_fixture_kills_only_its_own_pid(tmp_path: Path) -> None:
    with running_sshd(tmp_path / "s") as server:
        pid = server.pid
        os.kill(pid, 0)
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)


def test_a_huge_answer_fails_at_the_cap_and_the_process_stays_small(target: ProbeTarget) -> None:
    """A host that answers 512 MiB (a `command` check, and a plain read such as exposure's
    dpkg read): the check is an error "output too large (> 8 MB)", never a pass, and the
    process never holds the answer (peak RSS measured in a fresh interpreter)."""
    code = f"""
from orchestrator.probes import ProbeTarget, parse_checks, run_checks
from orchestrator.probes.connection import OutputTooLarge, SSHConnection
t = ProbeTarget(name="lab1", address={target.address!r}, port={target.port},
                known_hosts={target.known_hosts!r}, key_file={target.key_file!r})
big = ["head", "-c", "536870912", "/dev/zero"]
report = run_checks([t], parse_checks([{{"kind": "command", "argv": big, "id": "big"}}]),
                    deadline_s=60)
(r,) = report.results
print("CHECK", r.status, r.evidence)
with SSHConnection(t) as conn:
    try:
        conn.run("head -c 536870912 /dev/zero >&2", 60)
    except OutputTooLarge as exc:
        print("READ", exc.reason, exc.message)
    print("AFTER", conn.run("echo still usable", 10)[1].strip())
print("RSS", open("/proc/self/status").read().split("VmHWM:")[1].split()[0])  # own peak, kB
"""
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=180, check=False, cwd=ROOT)
    assert done.returncode == 0, done.stderr
    out = done.stdout
    assert "CHECK error output too large (> 8 MB): head -c 536870912 /dev/zero" in out, out
    assert "READ output output too large (> 8 MB)" in out, out
    assert "AFTER still usable" in out, out
    rss_mb = int(out.rsplit("RSS ", 1)[1]) / 1024
    print(f"peak RSS with a 512 MiB answer over ssh: {rss_mb:.0f} MB")
    assert rss_mb < 150, out
