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


def readable(version: object) -> bool:
    """Valid, and read by the parser that compares it (python-debian): `1.0-1:2` and `z:1`
    pass the syntax above and are still rejected there. Check this before comparing a
    version that came from a host or a feed."""
    if not is_valid(version):
        return False
    try:
        parse(str(version))
    except ValueError:
        return False
    return True


class Unreadable(ValueError):
    """A version python-debian rejects, in one entry of a feed: the entry is skipped, with
    this as its note (one bad entry never stops the whole fleet's `exposure`)."""

    def __init__(self, what: str, version: str) -> None:
        super().__init__(not_read(what, version))


def not_read(what: str, version: str) -> str:
    """The note for a version skipped because python-debian cannot compare it."""
    return f"not read: {what}: version {version[:80]!r} is not one Debian's rules can compare"


def require_readable(version: str, what: str) -> str:
    """`version`, or Unreadable (call after the syntax check: an invalid version is the
    feed's error, an unreadable one only its entry's)."""
    if not readable(version):
        raise Unreadable(what, version)
    return version


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
