"""Pure parts of the probe engine: parsers, check models, report rules, suite parsing."""

from __future__ import annotations

import pytest

from orchestrator.errors import BadInput
from orchestrator.probes import CheckResult, ProbeReport, ProbeTarget, parse_checks
from orchestrator.probes.checks.file import FileCheck
from orchestrator.probes.checks.listening import parse_ss_listening
from orchestrator.probes.checks.package import PackageCheck
from orchestrator.probes.checks.registry import KINDS, check_class
from orchestrator.probes.checks.sshd import SshdCheck, parse_sshd_t
from orchestrator.probes.checks.stale_processes import (
    deleted_path_from_maps_line,
    parse_stale_scan,
    unit_from_cgroup,
)
from orchestrator.probes.checks.sysctl import SysctlCheck

SS = """\
LISTEN 0      128          0.0.0.0:22        0.0.0.0:*    users:(("sshd",pid=812,fd=3))
LISTEN 0      4096   127.0.0.53%lo:53        0.0.0.0:*    users:(("systemd-resolve",pid=500,fd=14))
LISTEN 0      511             [::]:8080         [::]:*    users:(("nginx",pid=9,fd=6),("nginx",pid=10,fd=6))
LISTEN 0      128                *:9100            *:*
"""


def test_parse_ss_listening() -> None:
    got = parse_ss_listening(SS)
    assert [(x.address, x.port) for x in got] == [
        ("0.0.0.0", 22),
        ("127.0.0.53", 53),
        ("::", 8080),
        ("*", 9100),
    ]
    assert got[0].processes == ("sshd pid 812",)
    assert got[2].processes == ("nginx pid 9", "nginx pid 10")
    assert got[3].describe() == "port 9100 on * (unknown process)"
    assert parse_ss_listening("") == []
    assert parse_ss_listening("garbage line\n") == []


def test_maps_lines() -> None:
    line = "7f00-7f10 r-xp 00000000 08:01 1234   /usr/lib/x86_64-linux-gnu/libssl.so.3 (deleted)"
    assert deleted_path_from_maps_line(line) == "/usr/lib/x86_64-linux-gnu/libssl.so.3"
    assert (
        deleted_path_from_maps_line("7f00-7f10 r-xp 00000000 08:01 1234 /usr/lib/libc.so.6") is None
    )
    assert deleted_path_from_maps_line("7f00-7f10 rw-p 00000000 00:00 0") is None
    spaced = "7f00-7f10 r--p 00000000 08:01 1 /opt/my app/lib x.so (deleted)"
    assert deleted_path_from_maps_line(spaced) == "/opt/my app/lib x.so"


def test_parse_stale_scan_filters_and_names_process() -> None:
    out = "\n".join(
        [
            "42\tnginx\t0::/system.slice/nginx.service \t7f-8f r-xp 0 08:01 5 /usr/lib/libssl.so.3 (deleted)",
            "42\tnginx\t0::/system.slice/nginx.service \t8f-9f r--p 0 08:01 5 /usr/lib/libssl.so.3 (deleted)",
            "43\tfoo\t0::/user.slice/user-0.slice/session-2.scope \t7f-8f rw-s 0 00:01 9 /memfd:x (deleted)",
            "44\tpg\t0::/system.slice/pg.service \t7f-8f rw-s 0 00:05 9 /SYSV0000 (deleted)",
            "45\tx\t0::/ \t7f-8f rw-s 0 00:05 9 /dev/shm/seg (deleted)",
            "46\ty\t0::/ \t7f-8f r-xp 0 00:05 9 /home/u/a.out (deleted)",
            "SCANNED 80",
        ]
    )
    got = parse_stale_scan(out)
    assert len(got) == 1
    assert got[0].describe() == (
        "nginx (pid 42, unit nginx.service) maps deleted /usr/lib/libssl.so.3"
    )
    assert parse_stale_scan(out, prefixes=["/home/"])[0].pid == 46


def test_unit_from_cgroup() -> None:
    assert unit_from_cgroup("0::/system.slice/ssh.service\n") == "ssh.service"
    assert unit_from_cgroup("0::/user.slice/user-0.slice/session-3.scope") == "session-3.scope"
    assert unit_from_cgroup("0::/\n") is None


def test_parse_sshd_t() -> None:
    out = "port 22\nPasswordAuthentication no\nhostkey /etc/ssh/a\nhostkey /etc/ssh/b\n\n"
    got = parse_sshd_t(out)
    assert got["passwordauthentication"] == ["no"]
    assert got["hostkey"] == ["/etc/ssh/a", "/etc/ssh/b"]
    assert got["port"] == ["22"]


def test_parse_checks_shapes_and_ids() -> None:
    checks = parse_checks(
        [
            {"kind": "http", "url": "http://{host}:8080/health", "body_contains": "ok"},
            {"kind": "service", "name": "demo-web"},
            {"kind": "listening", "ports": [22], "allow": [8080]},
            {"kind": "package", "name": "demo-openssl", "fixed": "3.0.15-1", "cves": ["CVE-1"]},
            {"kind": "stale-processes"},
            {"kind": "reboot-pending"},
            {"kind": "file", "path": "/etc/shadow", "mode": "0640"},
            {"kind": "sshd", "settings": {"PasswordAuthentication": False}},
            {"kind": "sysctl", "values": {"kernel.randomize_va_space": 2}},
            {"kind": "command", "argv": ["true"], "id": "custom"},
        ]
    )
    assert [c.primary_id() for c in checks] == [
        "http:http://{host}:8080/health",
        "service:demo-web",
        "listening",
        "package:demo-openssl",
        "stale-processes",
        "reboot-pending",
        "file:/etc/shadow",
        "sshd",
        "sysctl",
        "custom",
    ]
    assert isinstance(checks[6], FileCheck) and checks[6].mode == 0o640
    assert isinstance(checks[7], SshdCheck)
    assert checks[7].settings == {"passwordauthentication": "no"}
    assert isinstance(checks[8], SysctlCheck) and checks[8].values == {
        "kernel.randomize_va_space": "2"
    }


@pytest.mark.parametrize(
    "bad",
    [
        [{"kind": "nope"}],
        [{"kind": "package", "name": "x"}],  # fixed missing
        [{"kind": "package", "name": "x", "fixed": "1", "fixd": "2"}],  # typo: extra forbidden
        [{"kind": "package", "name": "x;rm -rf /", "fixed": "1"}],
        [{"kind": "command", "argv": []}],
    ],
)
def test_parse_checks_rejects_bad_input(bad: list[dict[str, object]]) -> None:
    with pytest.raises(BadInput) as err:
        parse_checks(bad, source="bluegreen.yml probes")
    assert "bluegreen.yml probes[0" in str(err.value)


def test_parse_checks_names_every_problem_of_every_item() -> None:
    with pytest.raises(BadInput) as err:
        parse_checks(
            [{"kind": "nope"}, {"kind": "package", "name": "x", "fixd": "2"}, "text"],
            source="web.checks",
        )
    msg = err.value.message
    assert "web.checks[0.kind]: unknown kind 'nope' (known kinds: http, service" in msg
    assert "web.checks[1.package.fixed]: Field required" in msg
    assert "web.checks[1.package.fixd]: Extra inputs are not permitted" in msg
    assert "web.checks[2]: expected a mapping with `kind:`" in msg


def test_every_registered_kind_is_a_check_of_that_kind() -> None:
    import subprocess
    import sys

    for kind in KINDS:
        assert check_class(kind).model_fields["kind"].annotation.__args__ == (kind,)  # type: ignore[union-attr]
    # lazily: parsing one kind imports only its own module
    code = (
        "import sys\nfrom orchestrator.probes.checks import parse_checks\n"
        "parse_checks([{'kind': 'service', 'name': 'x'}])\n"
        "print(sorted(m for m in sys.modules if m.startswith('orchestrator.probes.checks.')))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == [
        "['orchestrator.probes.checks.base',",
        "'orchestrator.probes.checks.registry',",
        "'orchestrator.probes.checks.service']",
    ]


def test_package_advisory_text() -> None:
    c = PackageCheck(
        kind="package",
        name="demo-openssl",
        fixed="3.0.15-1",
        advisory="DEMO-2026-01",
        cves=["CVE-2026-0001"],
    )
    assert c._advisory() == " (DEMO-2026-01: CVE-2026-0001)"


def _r(host: str, status: str) -> CheckResult:
    return CheckResult(host, "c", status, "e", 0.0)  # type: ignore[arg-type]


def test_report_rules() -> None:
    assert not ProbeReport([], 0.0, 0.0).ok  # no data is not a pass
    assert ProbeReport([_r("a", "pass")], 0.0, 0.0, ("a",)).ok
    assert not ProbeReport([_r("a", "pass"), _r("a", "error")], 0.0, 0.0).ok
    missing = ProbeReport([_r("a", "pass")], 0.0, 0.0, ("a", "b"))
    assert not missing.ok  # host b has zero results
    assert [f.host for f in missing.failures] == ["b"]
    assert set(missing.by_host()) == {"a", "b"}


def test_known_hosts_name_has_the_port_when_not_22() -> None:
    t = ProbeTarget("web1", "10.0.0.5", "/etc/bg/known_hosts", port=2222, key_file="/k")
    assert t.known_hosts_name == "[10.0.0.5]:2222"
    assert ProbeTarget("web1", "10.0.0.5", "/k").known_hosts_name == "10.0.0.5"

