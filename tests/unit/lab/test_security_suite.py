from __future__ import annotations

from orchestrator.lab.security import PendingUpdate, parse_simulation, versions_key

# `apt-get -s dist-upgrade` against the lab image's dpkg status and Debian's security suite
SIMULATION = """\
Reading package lists...
Calculating upgrade...
The following packages will be upgraded:
  libssl3 openssl zlib1g
Inst libssl3 [3.0.20-1~deb12u2] (3.0.22-1~deb12u2 Debian-Security:12/oldstable-security [amd64])
Inst zlib1g [1:1.2.13.dfsg-1] (1:1.2.13.dfsg-1+deb12u1 Debian-Security:12/oldstable-security [amd64])
Inst libnew1 (1.0-1 Debian-Security:12/oldstable-security [amd64])
Conf libssl3 (3.0.22-1~deb12u2 Debian-Security:12/oldstable-security [amd64])
"""


def test_parse_simulation() -> None:
    assert parse_simulation(SIMULATION) == [
        PendingUpdate("libnew1", None, "1.0-1", ""),
        PendingUpdate("libssl3", "3.0.20-1~deb12u2", "3.0.22-1~deb12u2", ""),
        PendingUpdate("zlib1g", "1:1.2.13.dfsg-1", "1:1.2.13.dfsg-1+deb12u1", ""),
    ]


def test_versions_key_changes_with_versions() -> None:
    a = [PendingUpdate("libssl3", "3.0.20-1~deb12u2", "3.0.22-1~deb12u2", "")]
    b = [PendingUpdate("libssl3", "3.0.20-1~deb12u2", "3.0.23-1~deb12u1", "")]
    assert versions_key(a) != versions_key(b)
