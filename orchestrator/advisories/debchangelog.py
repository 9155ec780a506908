"""A `.deb`'s changelog, read with bounded memory (python-debian's `DebFile.changelog()`
gunzips the whole file into memory, and sends `data.tar.zst` through `unzstd` into memory).

The `.deb` is an ar archive; its `data.tar.{gz,xz,bz2,zst}` member is decompressed as a
stream (zstd by the `unzstd` command, read from its stdout) and walked once as a tar stream;
only `usr/share/doc/PKG/changelog.Debian.gz` (or `changelog.gz`, native packages) is kept,
gunzipped with a cap (`MAX_CHANGELOG_BYTES`). The whole walk is capped too (`max_bytes`),
so a bomb costs CPU for a bounded time and memory for one buffer. Symlinks inside the
package are followed as python-debian does (a second walk fetches the target).
"""

from __future__ import annotations

import gzip
import posixpath
import tarfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO

from orchestrator.advisories.base import bad_feed
from orchestrator.advisories.decompress import (
    ERRORS,
    CappedReader,
    Readable,
    decompressed,
    read_capped,
)

MAX_CHANGELOG_BYTES = 16 * 1024 * 1024
"""Debian's largest changelogs (the kernel's) are a few MB; a changelog past this is refused."""
_AR_MAGIC = b"!<arch>\n"
_CHANGELOG_FIX = (
    f"a changelog is read up to {MAX_CHANGELOG_BYTES >> 20} MB: check the package (a real "
    "changelog is far smaller), or its repository in advisories.repositories"
)


def changelog_bytes(
    deb: Path, package: str, origin: str, *, max_bytes: int,
    max_changelog: int = MAX_CHANGELOG_BYTES,
) -> bytes | None:
    """The package's changelog (gunzipped), None when it has none; BadInput naming `origin`
    when the .deb is damaged or something decompresses past its cap."""
    wanted = [f"usr/share/doc/{package}/changelog.Debian.gz", f"usr/share/doc/{package}/changelog.gz"]
    links: dict[str, str] = {}
    found = _walk(deb, origin, max_bytes, max_changelog, set(wanted), links)
    for name in wanted:
        if name in found:
            return found[name]
    targets: dict[str, str] = {}
    for n in wanted:
        target = _resolve(n, links)
        if target is not None and target != n:
            targets[n] = target
    if not targets:
        return None
    found = _walk(deb, origin, max_bytes, max_changelog, set(targets.values()), {})
    for name in wanted:
        target = targets.get(name)
        if target in found:
            return found[target]
    return None


def _walk(
    deb: Path, origin: str, max_bytes: int, max_changelog: int, wanted: set[str],
    links: dict[str, str],
) -> dict[str, bytes]:
    found: dict[str, bytes] = {}
    with _data_tar(deb, origin, max_bytes) as stream:
        try:
            with tarfile.open(fileobj=stream, mode="r|") as tar:  # type: ignore[call-overload]
                for member in tar:
                    name = posixpath.normpath(member.name.removeprefix("./")).lstrip("/")
                    if member.issym() or member.islnk():
                        base = posixpath.dirname(name) if member.issym() else ""
                        links[name] = posixpath.normpath(posixpath.join(base, member.linkname))
                    elif member.isfile() and name in wanted:
                        fh = tar.extractfile(member)
                        if fh is not None:
                            found[name] = _gunzip(fh, max_changelog, f"{origin}: {name}")
                        if len(found) == len(wanted):
                            break
        except (tarfile.TarError, *ERRORS) as exc:
            raise bad_feed(origin, f"not a readable .deb (data.tar: {exc})") from None
    return found


def _gunzip(fh: Readable, cap: int, name: str) -> bytes:
    try:
        with gzip.GzipFile(fileobj=fh) as gz:  # type: ignore[call-overload]
            return read_capped(gz, cap, name, _CHANGELOG_FIX)  # type: ignore[arg-type]
    except ERRORS as exc:
        raise bad_feed(name, f"damaged changelog ({exc})") from None


def _resolve(path: str, links: dict[str, str]) -> str | None:
    """`path` with symlinked components replaced (at most 20 hops), as the tar says."""
    for _ in range(20):
        parts = path.split("/")
        for i in range(len(parts), 0, -1):
            prefix = "/".join(parts[:i])
            if prefix in links:
                path = posixpath.normpath("/".join([links[prefix], *parts[i:]])).lstrip("/")
                break
        else:
            return path
    return None


_SUFFIXES = {"": None, ".gz": "gzip", ".xz": "xz", ".bz2": "bzip2", ".zst": "zstd"}


@contextmanager
def _data_tar(deb: Path, origin: str, max_bytes: int) -> Iterator[Readable]:
    """The decompressed data.tar member of the .deb, as a stream capped at `max_bytes`."""
    with open(deb, "rb") as raw:
        offset, size, name = _data_member(raw, origin)
        raw.seek(offset)
        suffix = name.removeprefix("data.tar")
        if suffix not in _SUFFIXES:
            raise bad_feed(origin, f"{name}: a compression this reader does not know")
        what = f"{origin}: {name}"
        with decompressed(raw, _SUFFIXES[suffix], size, what) as stream:
            yield CappedReader(stream, max_bytes, what, "check the package; the cap is "
                               "advisories.max_mb (README: 'Security advisories', limits)")


def _data_member(raw: BinaryIO, origin: str) -> tuple[int, int, str]:
    if raw.read(8) != _AR_MAGIC:
        raise bad_feed(origin, "not a readable .deb (no ar archive)")
    for _ in range(16):  # debian-binary, control.tar.*, data.tar.*, maybe a signature
        header = raw.read(60)
        if len(header) < 60 or header[58:60] != b"`\n":
            break
        name = header[:16].decode("ascii", "replace").strip().rstrip("/")
        try:
            size = int(header[48:58].decode("ascii").strip())
        except ValueError:
            break
        if name.startswith("data.tar"):
            return raw.tell(), size, name
        raw.seek(size + (size & 1), 1)
    raise bad_feed(origin, "not a readable .deb (no data.tar member)")
