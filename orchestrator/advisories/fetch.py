"""Read a feed from a file or an HTTP(S) URL, with a cache, an offline mode and limits.

HTTP(S): the body is kept in `cache_dir` with its ETag and Last-Modified; the next fetch
asks with If-None-Match / If-Modified-Since and a 304 reuses the cache. Offline, or when
the server cannot be reached, the cached copy is used (a note says so) if it is not too
old. Limits: `max_bytes` (also for what a compressed feed expands to: see `decompress`)
and `max_age` (age of
the content: Last-Modified, else the file's mtime or when it was fetched). A feed over a
limit, or that cannot be had at all, is one BadInput naming it: nothing is decided from it.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime, parsedate_to_datetime
from pathlib import Path

from orchestrator.advisories.base import bad_feed
from orchestrator.advisories.decompress import ERRORS as DECOMPRESS_ERRORS
from orchestrator.advisories.decompress import (
    CappedReader,
    compression_of,
    decompressed,
    decompressed_cap,
)
from orchestrator.errors import BadInput
from orchestrator.secrets import redact_url

DEFAULT_MAX_BYTES = 512 * 1024 * 1024
_CHUNK = 1024 * 1024


class FeedMissing(BadInput):
    """The feed does not exist (HTTP 404 or no such file): an index may have other names."""


@dataclass(frozen=True)
class FetchPolicy:
    cache_dir: Path
    offline: bool = False
    max_bytes: int = DEFAULT_MAX_BYTES
    max_age: timedelta | None = None
    timeout_s: float = 60.0


@dataclass
class Fetched:
    """A feed's bytes on local disk (`path`), where they came from and how old they are."""

    path: Path
    origin: str
    modified: datetime | None
    from_cache: bool = False
    notes: list[str] = field(default_factory=list)

    def read_bytes(self, policy: FetchPolicy) -> bytes:
        """The content, decompressed when it is gzip or xz (size-limited either way)."""
        return b"".join(iter_decompressed(self.path, policy.max_bytes, self.origin))


def is_url(location: str) -> bool:
    return location.startswith(("http://", "https://"))


def display(location: str) -> str:
    """How a feed is named in messages: URLs without credentials or query tokens."""
    return redact_url(location) if is_url(location) else location


def fetch(location: str, policy: FetchPolicy) -> Fetched:
    """The feed at `location` (a path, file:// URL or http(s):// URL) on local disk."""
    if location.startswith("file://"):
        location = location[len("file://") :]
    if is_url(location):
        return _fetch_url(location, policy)
    return _fetch_file(Path(location).expanduser(), policy)


def _fetch_file(path: Path, policy: FetchPolicy) -> Fetched:
    name = str(path)
    try:
        st = path.stat()
    except FileNotFoundError:
        raise FeedMissing(f"advisory feed {name}: no such file", hint="check the path") from None
    except OSError as exc:
        raise bad_feed(name, f"cannot be read ({exc.strerror or exc})", "check the path") from None
    if not path.is_file():
        raise bad_feed(name, "is not a file", "give the feed file itself")
    if st.st_size > policy.max_bytes:
        raise _too_large(name, st.st_size, policy)
    modified = datetime.fromtimestamp(st.st_mtime, UTC)
    _check_age(name, modified, policy)
    return Fetched(path, name, modified)


def _cache_paths(url: str, cache_dir: Path) -> tuple[Path, Path]:
    key = hashlib.sha256(url.encode()).hexdigest()[:24]
    return cache_dir / f"feed-{key}.body", cache_dir / f"feed-{key}.json"


def _fetch_url(url: str, policy: FetchPolicy) -> Fetched:
    name = display(url)
    body, meta_path = _cache_paths(url, policy.cache_dir)
    meta = _read_meta(meta_path) if body.exists() else {}
    if policy.offline:
        if not meta:
            raise bad_feed(name, "offline, and not in the cache", "fetch it once while online")
        return _cached(name, body, meta, policy, "offline: the cached copy is used")
    request = urllib.request.Request(url, headers={"User-Agent": "bluegreen advisories"})
    if meta.get("etag"):
        request.add_header("If-None-Match", str(meta["etag"]))
    if meta.get("last_modified"):
        request.add_header("If-Modified-Since", str(meta["last_modified"]))
    try:
        response = urllib.request.urlopen(request, timeout=policy.timeout_s)  # noqa: S310
    except urllib.error.HTTPError as exc:
        if exc.code == 304 and meta:
            meta["checked_at"] = time.time()
            _write_meta(meta_path, meta)
            return _cached(name, body, meta, policy, None)
        if exc.code == 404:
            raise FeedMissing(f"advisory feed {name}: HTTP 404", hint="check the URL") from None
        if meta:
            return _cached(name, body, meta, policy, f"HTTP {exc.code}: the cached copy is used")
        raise bad_feed(name, f"HTTP {exc.code} {exc.reason}", "check the URL") from None
    except (OSError, ValueError) as exc:
        reason = getattr(exc, "reason", exc)
        if meta:
            return _cached(name, body, meta, policy, f"unreachable ({reason}): cached copy used")
        raise bad_feed(
            name, f"cannot be fetched ({reason})", "check the URL and the network, or use a file"
        ) from None
    with response:
        length = response.headers.get("Content-Length")
        if length and length.isdigit() and int(length) > policy.max_bytes:
            raise _too_large(name, int(length), policy)
        policy.cache_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        fd, tmp_name = tempfile.mkstemp(dir=policy.cache_dir, prefix=".feed-")
        tmp = Path(tmp_name)
        try:
            size = 0
            with os.fdopen(fd, "wb") as out:
                while chunk := response.read(_CHUNK):
                    size += len(chunk)
                    if size > policy.max_bytes:
                        raise _too_large(name, size, policy)
                    out.write(chunk)
            if length and length.isdigit() and size != int(length):
                raise bad_feed(name, f"truncated download ({size} of {length} bytes)")
            tmp.replace(body)
        finally:
            tmp.unlink(missing_ok=True)
        last_modified = response.headers.get("Last-Modified")
        meta = {
            "url": name,
            "etag": response.headers.get("ETag"),
            "last_modified": last_modified,
            "fetched_at": time.time(),
            "checked_at": time.time(),
        }
    _write_meta(meta_path, meta)
    return _cached(name, body, meta, policy, None, from_cache=False)


def _cached(
    name: str,
    body: Path,
    meta: dict[str, object],
    policy: FetchPolicy,
    note: str | None,
    *,
    from_cache: bool = True,
) -> Fetched:
    modified = _http_date(meta.get("last_modified"))
    if modified is None:
        fetched = meta.get("fetched_at")
        modified = (
            datetime.fromtimestamp(float(fetched), UTC)
            if isinstance(fetched, int | float)
            else None
        )
    _check_age(name, modified, policy)
    notes = [f"{name}: {note}"] if note else []
    return Fetched(body, name, modified, from_cache, notes)


def _http_date(value: object) -> datetime | None:
    if not isinstance(value, str) or not value:
        return None
    try:
        parsed = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def http_date(when: datetime) -> str:
    return format_datetime(when.astimezone(UTC), usegmt=True)


def _check_age(name: str, modified: datetime | None, policy: FetchPolicy) -> None:
    if policy.max_age is None or modified is None:
        return
    age = datetime.now(UTC) - modified
    if age > policy.max_age:
        raise bad_feed(
            name,
            f"too old: last changed {modified:%Y-%m-%d %H:%M} UTC, {_days(age)} ago "
            f"(max_age {_days(policy.max_age)})",
            "update the feed (or its mirror), or raise advisories.max_age in bluegreen.yml",
        )


def _days(delta: timedelta) -> str:
    hours = delta.total_seconds() / 3600
    return f"{hours / 24:.1f} days" if hours >= 48 else f"{hours:.1f} hours"


def _too_large(name: str, size: int, policy: FetchPolicy) -> Exception:
    return bad_feed(
        name,
        f"too large ({size / 1e6:.1f} MB, limit {policy.max_bytes / 1e6:.1f} MB)",
        "check that this is the feed you meant, or raise advisories.max_mb in bluegreen.yml",
    )


def _read_meta(path: Path) -> dict[str, object]:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _write_meta(path: Path, meta: dict[str, object]) -> None:
    from orchestrator.safe_write import write_file  # unpredictable temp name, O_NOFOLLOW

    write_file(path, json.dumps(meta))


def iter_decompressed(path: Path, max_bytes: int, name: str) -> Iterator[bytes]:
    """The file's bytes, decompressed when it starts with gzip, xz, bzip2 or zstd magic;
    streamed, and at most `decompressed_cap()` bytes after decompression (BadInput
    "decompresses past N MB" beyond); a damaged or truncated archive is BadInput."""
    with open(path, "rb") as raw:
        size = os.fstat(raw.fileno()).st_size
        kind = compression_of(raw.read(6))
        raw.seek(0)
        cap = decompressed_cap(size, max_bytes) if kind else max_bytes
        try:
            with decompressed(raw, kind, size, name) as stream:
                reader = CappedReader(stream, cap, name)
                while chunk := reader.read(_CHUNK):
                    yield chunk
        except DECOMPRESS_ERRORS as exc:
            raise bad_feed(name, f"damaged or truncated archive ({exc})") from None
