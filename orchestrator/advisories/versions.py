"""Debian version comparison: python-debian's implementation of Debian policy 5.6.12.

Never compare versions as strings or tuples: `1:1.2` > `2.0` (epoch), `3.0.22-1~deb12u2` <
`3.0.22-1` (`~` sorts before everything, even the end), `+deb12u1` > `` .
"""

from __future__ import annotations

import re
from functools import lru_cache
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from debian.debian_support import Version

# [epoch:]upstream[-revision]: upstream starts with a digit (policy) - we accept a letter
# too, as dpkg does with a warning; only these characters, no spaces, no shell syntax.
_VERSION_RE = re.compile(r"^(?:\d{1,9}:)?[A-Za-z0-9][A-Za-z0-9.+~:-]*$")
MAX_LENGTH = 128


def is_valid(version: object) -> bool:
    return (
        isinstance(version, str)
        and 0 < len(version) <= MAX_LENGTH
        and bool(_VERSION_RE.match(version))
        and not version.endswith(("-", ":"))
    )


@lru_cache(maxsize=65536)
def parse(version: str) -> Version:
    from debian.debian_support import Version

    return Version(version)


def compare(a: str, b: str) -> int:
    """-1, 0 or 1 as a is older than, equal to or newer than b (Debian's rules)."""
    va, vb = parse(a), parse(b)
    return (va > vb) - (va < vb)


def older(a: str, b: str) -> bool:
    return compare(a, b) < 0


def newest(versions: list[str]) -> str:
    best = versions[0]
    for v in versions[1:]:
        if compare(v, best) > 0:
            best = v
    return best
