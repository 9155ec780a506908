from __future__ import annotations

import subprocess

import pytest

from orchestrator.advisories import versions

# (a, b, expected sign of a - b), as `dpkg --compare-versions` decides
CASES = [
    ("1:1.2.13.dfsg-1", "1.9", 1),  # the epoch wins
    ("1:1.2.13.dfsg-1+deb12u1", "1:1.2.13.dfsg-1", 1),  # +deb12u1 after the plain revision
    ("3.0.22-1~deb12u2", "3.0.22-1", -1),  # ~ sorts before the end
    ("3.0.22-1~deb12u2", "3.0.22-1~deb12u1", 1),
    ("3.0.20-1~deb12u2", "3.0.22-1~deb12u1", -1),
    ("2.5.0-1+deb12u10", "2.5.0-1+deb12u9", 1),  # numbers, not strings
    ("1.0~rc1", "1.0", -1),
    ("1.0", "1.0-0", 0),
    ("10.42-1", "10.42-1+deb12u2", -1),
]


@pytest.mark.parametrize(("a", "b", "sign"), CASES)
def test_compare_follows_debian_rules(a: str, b: str, sign: int) -> None:
    assert versions.compare(a, b) == sign
    assert versions.compare(b, a) == -sign


@pytest.mark.parametrize(("a", "b", "sign"), CASES)
def test_compare_agrees_with_dpkg(a: str, b: str, sign: int) -> None:
    op = {1: "gt", 0: "eq", -1: "lt"}[sign]
    assert subprocess.run(["dpkg", "--compare-versions", a, op, b]).returncode == 0


def test_string_order_would_be_wrong() -> None:
    assert "2.5.0-1+deb12u10" < "2.5.0-1+deb12u9"  # what string comparison says
    assert versions.older("2.5.0-1+deb12u9", "2.5.0-1+deb12u10")


@pytest.mark.parametrize(
    "bad", ["", " 1.0", "1.0 ", "1.0;rm -rf /", "1.0$(x)", "-1", "1.0-", "a" * 200, "1:", "é1"]
)
def test_invalid_versions(bad: str) -> None:
    assert not versions.is_valid(bad)


def test_newest() -> None:
    assert versions.newest(["3.0.22-1~deb12u1", "3.0.22-1~deb12u2", "3.0.20-1"]) == (
        "3.0.22-1~deb12u2"
    )
