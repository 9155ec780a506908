"""Decompression of untrusted data, streamed and capped by the DECOMPRESSED size.

A limit on what is downloaded is no limit on what it expands to: 64 KiB of gzip are 64 MB
of text, and JSON of that size is gigabytes of Python objects. Every reader of a feed, an
index or a `.deb` decompresses through here: gzip, xz, bzip2 (stdlib, read in chunks) and
zstd (the `unzstd` command, its stdout read in chunks), and stops with one BadInput
"... decompresses past N MB" at the cap. A feed's cap is `decompressed_cap()`: at most
`RATIO` times its compressed size (at least `FLOOR`), and never more than `max_mb`.
"""

from __future__ import annotations

import bz2
import gzip
import lzma
import subprocess
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Protocol

from orchestrator.advisories.base import bad_feed

RATIO = 100
"""Real feeds expand 3-30 times (Packages.xz ~7, the tracker's JSON ~15); bombs ~1000."""
FLOOR = 32 * 1024 * 1024
_CHUNK = 1024 * 1024
_MAGIC = {b"\x1f\x8b": "gzip", b"\xfd7zXZ": "xz", b"BZh": "bzip2", b"\x28\xb5\x2f\xfd": "zstd"}


class Readable(Protocol):
    def read(self, n: int = -1, /) -> bytes: ...


def mb(n: int) -> str:
    return f"{n / (1024 * 1024):.0f} MB" if n >= 1024 * 1024 else f"{n / 1024:.0f} KB"


def decompressed_cap(compressed_size: int, max_bytes: int) -> int:
    """How far a compressed feed of this size may expand."""
    return min(max_bytes, max(FLOOR, RATIO * compressed_size))


def too_big(name: str, cap: int, fix: str | None = None) -> Exception:
    return bad_feed(
        name,
        f"decompresses past {mb(cap)} (a compression bomb, or not the feed you meant)",
        fix or "check the feed; the cap is advisories.max_mb, and at most "
        f"{RATIO} times the compressed size (README: 'Security advisories', limits)",
    )


def compression_of(head: bytes) -> str | None:
    """gzip, xz, bzip2 or zstd from the first bytes; None: not compressed."""
    return next((kind for magic, kind in _MAGIC.items() if head.startswith(magic)), None)


class CappedReader:
    """A read()-only stream over `inner` that raises `too_big` past `cap` bytes."""

    def __init__(self, inner: Readable, cap: int, name: str, fix: str | None = None) -> None:
        self.inner, self.cap, self.name, self.total, self.fix = inner, cap, name, 0, fix

    def read(self, n: int = -1) -> bytes:
        want = _CHUNK if n is None or n < 0 else n
        data = self.inner.read(min(want, self.cap + 1 - self.total) or 1)
        self.total += len(data)
        if self.total > self.cap:
            raise too_big(self.name, self.cap, self.fix)
        return data


class Slice:
    """A read()-only view of the next `size` bytes of `inner` (an ar member): EOF after."""

    def __init__(self, inner: Readable, size: int) -> None:
        self.inner, self.left = inner, size

    def read(self, n: int = -1) -> bytes:
        want = self.left if n is None or n < 0 else min(n, self.left)
        data = self.inner.read(want) if want > 0 else b""
        self.left -= len(data)
        return data


def read_capped(stream: Readable, cap: int, name: str, fix: str | None = None) -> bytes:
    """All of `stream`, or `too_big` once it passes `cap` (never more than cap+1 in memory)."""
    parts: list[bytes] = []
    total = 0
    while chunk := stream.read(min(_CHUNK, cap + 1 - total) or 1):
        total += len(chunk)
        if total > cap:
            raise too_big(name, cap, fix)
        parts.append(chunk)
    return b"".join(parts)


@contextmanager
def decompressed(raw: Readable, kind: str | None, size: int, name: str) -> Iterator[Readable]:
    """The next `size` bytes of `raw`, decompressed as `kind` (None: as they are)."""
    part = Slice(raw, size)
    if kind == "zstd":
        with unzstd(part, name) as out:
            yield out
    elif kind == "gzip":
        yield gzip.GzipFile(fileobj=part)  # type: ignore[call-overload, arg-type]
    elif kind == "xz":
        yield lzma.LZMAFile(part)  # type: ignore[call-overload, arg-type]
    elif kind == "bzip2":
        yield bz2.BZ2File(part)  # type: ignore[call-overload, arg-type]
    else:
        yield part


ERRORS = (EOFError, OSError, lzma.LZMAError, ValueError)
"""What a damaged or truncated archive raises while it is read."""


@contextmanager
def unzstd(part: Slice, name: str) -> Iterator[Readable]:
    """The `unzstd` command fed from a thread, its stdout read as we go (never whole)."""
    proc = subprocess.Popen(
        ["unzstd", "-q", "-c"], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
    )
    stdin, stdout = proc.stdin, proc.stdout
    assert stdin is not None and stdout is not None

    def feed() -> None:
        try:
            while chunk := part.read(_CHUNK):
                stdin.write(chunk)
        except (OSError, ValueError):
            pass  # unzstd stopped (done, or killed because we are)
        finally:
            try:
                stdin.close()
            except OSError:
                pass

    writer = threading.Thread(target=feed, name="unzstd-feed", daemon=True)
    writer.start()
    try:
        yield stdout
    finally:
        proc.kill()
        proc.wait()
        stdout.close()
        writer.join(timeout=10)
