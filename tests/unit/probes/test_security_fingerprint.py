"""The security part of the fingerprint: parsing each section, and findings in words."""

from __future__ import annotations

import pytest

from orchestrator.probes.drift import (
    BASE_KINDS,
    KINDS,
    FingerprintError,
    compare_to_baseline,
    fingerprint_script,
    parse_fingerprint,
)
from orchestrator.probes.security import SECURITY_KINDS, describe_changes, diff_items
from tests.unit.probes.test_drift import OUTPUT, SECURITY_OUTPUT, H, K, M


def test_every_security_section_is_parsed() -> None:
    got = parse_fingerprint("h", OUTPUT).items
    assert set(got) == set(KINDS)
    assert got["authorized-key"] == {f"root {K}": "ED25519 256",
                                     "root file /root/.ssh/authorized_keys": H}
    assert got["user"] == {"root": "uid=0 gid=0 home=/root shell=/bin/bash"}
    assert got["group"] == {"sudo": "gid=27 members=alice,bob"}
    assert got["sudoers"] == {"/etc/sudoers": H}
    assert got["setuid"] == {"/usr/bin/passwd": f"4755 root:root {H}"}
    assert got["cron"] == {"/etc/cron.d/e2scrub_all": H}
    assert got["timer"] == {"dpkg-db-backup.timer": "loaded active"}
    assert got["kernel-module"] == {"(not visible)": "no /proc/modules: a container"}
    # v4 + v6 sockets of one port merge; a replaced binary is the same path; the client's
    # ephemeral UDP port is not a listener
    assert got["listener"] == {"tcp/22": "/usr/sbin/sshd", "tcp/8080": "/usr/bin/python3.11"}
    assert got["sshd-config"] == {"/etc/ssh/sshd_config": H}
    assert got["pam"] == {"/etc/pam.d/sshd": H}


def test_no_key_bodies_and_no_per_host_identity_in_the_script() -> None:
    script = fingerprint_script(["/etc/ssh/sshd_config"])
    assert "ssh-keygen -l" in script
    for per_host in ("ssh_host_", "machine-id", "boot_id"):
        assert per_host not in script


def test_security_can_be_left_out_and_a_missing_section_is_an_error() -> None:
    base = OUTPUT.replace(SECURITY_OUTPUT, "")
    assert set(parse_fingerprint("h", base, security=False).items) == set(BASE_KINDS)
    assert "getent" not in fingerprint_script([], security=False)
    with pytest.raises(FingerprintError, match="no authorized-key section"):
        parse_fingerprint("h", base)
    failed = OUTPUT.replace(f"{M} setuid\n", f"{M} setuid\nfind: denied\n").replace(
        f"{M}-rc 0\n{M} cron", f"{M}-rc 1\n{M} cron")
    with pytest.raises(FingerprintError, match="setuid section failed"):
        parse_fingerprint("h", failed)


def test_a_new_root_key_is_named_with_its_fingerprint() -> None:
    before = parse_fingerprint("g1", OUTPUT).items
    new = "SHA256:" + "N" * 43
    after = {**before, "authorized-key": {**before["authorized-key"], f"root {new}": "RSA 3072",
                                          "root file /root/.ssh/authorized_keys": "f" * 64}}
    words = describe_changes(diff_items("g1", before, after, "before the gate"))
    assert words == [f"authorized_keys of root +1 key ({new})"]


def test_findings_name_item_expected_and_actual() -> None:
    before = parse_fingerprint("g1", OUTPUT).items
    after = {
        **before,
        "setuid": {**before["setuid"], "/tmp/sh": f"4755 root:root {H}"},
        "user": {**before["user"], "eve": "uid=0 gid=0 home=/ shell=/bin/sh"},
        "sudoers": {"/etc/sudoers": "b" * 64},
        "listener": {**before["listener"], "tcp/4444": "/usr/bin/nc"},
        "cron": {},
        "authorized-key": {"root file /root/.ssh/authorized_keys": "c" * 64},
    }
    diffs = diff_items("g1", before, after, "baseline")
    assert all(d.against == "baseline" and d.host == "g1" for d in diffs)
    words = describe_changes(diffs)
    assert words[0] == f"authorized_keys of root -1 key ({K})"
    assert "setuid/setgid file /tmp/sh added (4755 root:root eeeeeeeeeeeeeeee)" in words
    assert "user eve added (uid=0 gid=0 home=/ shell=/bin/sh)" in words
    assert ("sudoers file /etc/sudoers changed: bbbbbbbbbbbbbbbb, expected eeeeeeeeeeeeeeee"
            in words)
    assert "listener tcp/4444 added (/usr/bin/nc)" in words
    assert "cron file /etc/cron.d/e2scrub_all removed (was eeeeeeeeeeeeeeee)" in words


def test_key_options_alone_are_reported() -> None:
    before = parse_fingerprint("g1", OUTPUT).items
    after = {**before, "authorized-key": {**before["authorized-key"],
                                          "root file /root/.ssh/authorized_keys": "c" * 64}}
    assert describe_changes(diff_items("g1", before, after, "x")) == [
        "authorized_keys file /root/.ssh/authorized_keys of root changed "
        "(key options or lines that are not keys)"]


def test_baseline_with_security_kinds_reports_a_planted_key() -> None:
    fp = parse_fingerprint("b1", OUTPUT)
    approved = {k: dict(v) for k, v in fp.items.items()}
    assert compare_to_baseline({"b1": fp}, approved) == []
    planted = parse_fingerprint("b1", OUTPUT.replace(
        f"{M}-rc 0\n{M} user", f"root\tkey\tSHA256:new\tRSA) 3072\n{M}-rc 0\n{M} user"))
    diffs = compare_to_baseline({"b1": planted}, approved)
    assert [(d.kind, d.key, d.expected, d.actual) for d in diffs] == [
        ("authorized-key", "root SHA256:new", None, "RSA 3072")]
    assert set(SECURITY_KINDS) <= set(KINDS)
