"""Drift fingerprints and comparisons (pure: no hosts)."""

from __future__ import annotations

import pytest

from orchestrator.baseline.approved import common_part
from orchestrator.probes.drift import (
    Fingerprint,
    FingerprintError,
    compare_sides,
    compare_to_baseline,
    fingerprint_script,
    parse_fingerprint,
)

M = "@@bluegreen-drift@@"
K = "SHA256:8TAwaMYCDDAyt8RLLP1TFRFouEXhc2RX1lqtY2Vk+EQ"
H = "e" * 64
SECURITY_OUTPUT = f"""{M} authorized-key
root\tfile\t/root/.ssh/authorized_keys\t{H}
root\tkey\t{K}\tED25519) 256
{M}-rc 0
{M} user
root:x:0:0:root:/root:/bin/bash
{M}-rc 0
{M} group
sudo:x:27:alice,bob
{M}-rc 0
{M} sudoers
{H}  /etc/sudoers
{M}-rc 0
{M} setuid
/usr/bin/passwd\t4755 root:root {H}
{M}-rc 0
{M} cron
{H}  /etc/cron.d/e2scrub_all
{M}-rc 0
{M} timer
dpkg-db-backup.timer loaded active waiting Daily dpkg database backup timer
{M}-rc 0
{M} kernel-module
(not visible) no /proc/modules: a container
{M}-rc 0
{M} listener
tcp LISTEN 0 128 0.0.0.0:22 0.0.0.0:* users:(("sshd",pid=71,fd=3))
tcp LISTEN 0 128 [::]:22 [::]:* users:(("sshd",pid=71,fd=4))
tcp LISTEN 0 5 0.0.0.0:8080 0.0.0.0:* users:(("python3",pid=90,fd=3))
udp UNCONN 0 0 0.0.0.0:41234 0.0.0.0:* users:(("dhclient",pid=95,fd=3))
exe 71 /usr/sbin/sshd
exe 90 /usr/bin/python3.11 (deleted)
exe 95 /usr/sbin/dhclient
{M}-rc 0
{M} sshd-config
{H}  /etc/ssh/sshd_config
{M}-rc 0
{M} pam
{H}  /etc/pam.d/sshd
{M}-rc 0
"""

OUTPUT = f"""{M} package
ii \tdemo-openssl\t3.0.11-1
rc \told-thing\t1.0
ii \tdemo-web\t1.0.0
{M}-rc 0
{M} unit-enabled
multi-user.target.wants/demo-web.service\t/lib/systemd/system/demo-web.service
apt-daily.timer\t/dev/null
multi-user.target.wants/user@0.service\t/lib/systemd/system/user@.service
{M}-rc 0
{M} unit-running
demo-web.service loaded active running Demo web
user@0.service loaded active running User Manager for UID 0
{M}-rc 0
{M} port
LISTEN 0 128 0.0.0.0:22 0.0.0.0:*
LISTEN 0 5 10.231.1.13:8080 0.0.0.0:*
LISTEN 0 5 [::]:22 [::]:*
{M}-rc 0
{M} file
{"a" * 64}  /etc/ssh/sshd_config
absent  /etc/missing
{M}-rc 0
""" + SECURITY_OUTPUT


def fp(host: str, **kinds: dict[str, str]) -> Fingerprint:
    base: dict[str, dict[str, str]] = {
        "package": {"demo-openssl": "3.0.11-1", "demo-web": "1.0.0", "bash": "5.2"},
        "unit-enabled": {"multi-user.target.wants/demo-web.service": "enabled"},
        "unit-running": {"demo-web.service": "running"},
        "port": {"tcp/22": "any"},
        "file": {"/etc/ssh/sshd_config": "a" * 64},
    }
    for kind, values in kinds.items():
        base[kind.replace("_", "-")] = {**base[kind.replace("_", "-")], **values}
    return Fingerprint(host, base)


def test_parse_fingerprint_sections() -> None:
    got = parse_fingerprint("h", OUTPUT)
    assert got.items["package"] == {"demo-openssl": "3.0.11-1", "demo-web": "1.0.0"}
    assert got.items["unit-enabled"] == {
        "multi-user.target.wants/demo-web.service": "enabled",
        "apt-daily.timer": "masked",
    }
    assert got.items["unit-running"] == {"demo-web.service": "running"}  # user@ is volatile
    assert got.items["port"] == {"tcp/22": "any", "tcp/8080": "host-address"}
    assert got.items["file"] == {"/etc/ssh/sshd_config": "a" * 64, "/etc/missing": "absent"}


def test_parse_fingerprint_failed_section_raises() -> None:
    broken = OUTPUT.replace(f"{M} port\n", f"{M} port\nss: not found\n").replace(
        f"{M}-rc 0\n{M} file", f"{M}-rc 127\n{M} file"
    )
    with pytest.raises(FingerprintError, match="port section failed"):
        parse_fingerprint("h", broken)
    with pytest.raises(FingerprintError, match="no file section"):
        parse_fingerprint("h", OUTPUT.split(f"{M} file")[0])


def test_script_quotes_file_names() -> None:
    script = fingerprint_script(["/etc/a b", "/etc/x;rm -rf /"])
    assert "'/etc/a b'" in script and "'/etc/x;rm -rf /'" in script


def test_mirror_images_have_no_drift() -> None:
    assert compare_sides({"g1": fp("g1"), "g2": fp("g2")}, {"b1": fp("b1"), "b2": fp("b2")}) == []


def test_patched_packages_may_differ_from_live_side_only() -> None:
    patched = {"demo-openssl": "3.0.15-1"}
    side = {"g1": fp("g1", package=patched), "g2": fp("g2", package=patched)}
    live = {"b1": fp("b1"), "b2": fp("b2")}
    assert compare_sides(side, live, patched_packages=["demo-openssl"]) == []
    diffs = compare_sides(side, live, patched_packages=["demo-web"])
    assert {(d.host, d.key, d.against) for d in diffs} == {
        ("g1", "demo-openssl", "live side"),
        ("g2", "demo-openssl", "live side"),
    }
    # None: any version may differ (security updates), not the presence of a package
    assert compare_sides(side, live, patched_packages=None) == []


def test_patched_package_must_still_match_within_the_side() -> None:
    side = {"g1": fp("g1", package={"demo-openssl": "3.0.15-1"}), "g2": fp("g2")}
    diffs = compare_sides(side, {"b1": fp("b1")}, patched_packages=["demo-openssl"])
    assert len(diffs) == 1
    assert diffs[0].host in ("g1", "g2") and diffs[0].against == "own side"


def test_one_edited_file_names_that_host_and_file() -> None:
    side = {"g1": fp("g1"), "g2": fp("g2", file={"/etc/ssh/sshd_config": "b" * 64})}
    diffs = compare_sides(side, {"b1": fp("b1"), "b2": fp("b2")})
    assert [(d.host, d.kind, d.key) for d in diffs] == [("g2", "file", "/etc/ssh/sshd_config")]
    assert diffs[0].expected == "a" * 64 and diffs[0].actual == "b" * 64
    assert "bbbbbbbbbbbbbbbb" in diffs[0].describe()


def test_extra_port_and_unit_and_drift_on_live_side() -> None:
    side = {"g1": fp("g1", port={"tcp/9999": "any"}), "g2": fp("g2")}
    live = {"b1": fp("b1"), "b2": fp("b2"), "b3": fp("b3", unit_running={"x.service": "running"})}
    diffs = {(d.host, d.kind, d.key, d.expected, d.actual) for d in compare_sides(side, live)}
    assert ("g1", "port", "tcp/9999", None, "any") in diffs
    assert ("b3", "unit-running", "x.service", None, "running") in diffs
    assert len(diffs) == 2


def test_baseline_common_part_and_compare() -> None:
    a, b = fp("a"), fp("b", file={"/etc/ssh/sshd_config": "b" * 64})
    common = common_part([a, b])
    assert "/etc/ssh/sshd_config" not in common["file"]
    assert common["package"] == a.items["package"]
    assert list(common["package"]) == sorted(common["package"])
    base = common_part([a])
    diffs = compare_to_baseline({"a": a, "b": b}, base)
    assert [(d.host, d.key, d.against) for d in diffs] == [
        ("b", "/etc/ssh/sshd_config", "baseline")
    ]


def _with_setuid(host: str, setuid: dict[str, str], **package: str) -> Fingerprint:
    base = fp(host, package=package) if package else fp(host)
    return Fingerprint(host, {**base.items, "setuid": setuid})


def test_a_setuid_file_replaced_by_the_patchs_package_upgrade_is_no_drift() -> None:
    """A security update of libpam-modules-bin replaces /usr/sbin/unix_chkpwd (setuid):
    its content may differ from the live side with its package's version, nothing else."""
    old, new, bad = "a" * 64, "b" * 64, "c" * 64
    chk = "/usr/sbin/unix_chkpwd"
    live = {"b1": _with_setuid("b1", {chk: f"2755 root:shadow {old} libpam-modules-bin"},
                               **{"libpam-modules-bin": "1.5.2-6+deb12u1"})}

    def standby(value: str, version: str = "1.5.2-6+deb12u3") -> dict[str, Fingerprint]:
        return {"g1": _with_setuid("g1", {chk: value}, **{"libpam-modules-bin": version})}

    upgraded = f"2755 root:shadow {new} libpam-modules-bin"
    assert compare_sides(standby(upgraded), live, patched_packages=["libpam-modules-bin"]) == []
    assert compare_sides(standby(upgraded), live, patched_packages=None) == []
    # not the patch's package, or its version did not change: drift
    assert compare_sides(standby(upgraded), live, patched_packages=["demo-web"])
    assert compare_sides(standby(upgraded, "1.5.2-6+deb12u1"), live, patched_packages=None)
    # a changed mode or owner, or a file no package owns, is drift whatever the patch
    for value in (f"4755 root:shadow {new} libpam-modules-bin",
                  f"2755 root:root {new} libpam-modules-bin", f"2755 root:shadow {bad}"):
        diffs = compare_sides(standby(value), live, patched_packages=None)
        assert [(d.kind, d.key, d.against) for d in diffs] == [("setuid", chk, "live side")]
