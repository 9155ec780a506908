from __future__ import annotations

import gzip
import os
import threading
import time
from collections.abc import Iterator
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from orchestrator.advisories.fetch import FeedMissing, FetchPolicy, fetch, http_date
from orchestrator.errors import BadInput


class Feed:
    """What the test server serves, and what it was asked."""

    def __init__(self) -> None:
        self.body = b'{"openssl": {}}'
        self.etag = '"v1"'
        self.last_modified = time.time() - 3600
        self.requests: list[dict[str, str]] = []
        self.lie_about_length = 0
        self.stop: object = None


@pytest.fixture
def server() -> Iterator[tuple[str, Feed]]:
    feed = Feed()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802
            feed.requests.append(dict(self.headers))
            if self.path == "/missing":
                self.send_error(404)
                return
            if self.headers.get("If-None-Match") == feed.etag:
                self.send_response(304)
                self.end_headers()
                return
            self.send_response(200)
            self.send_header("ETag", feed.etag)
            self.send_header("Last-Modified", http_date_of(feed.last_modified))
            self.send_header("Content-Length", str(len(feed.body) + feed.lie_about_length))
            self.end_headers()
            self.wfile.write(feed.body)

        def log_message(self, *args: object) -> None:
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()

    def stop() -> None:
        httpd.shutdown()
        httpd.server_close()

    feed.stop = stop
    yield f"http://127.0.0.1:{httpd.server_address[1]}", feed
    if httpd.socket.fileno() != -1:
        stop()


def http_date_of(ts: float) -> str:
    from datetime import UTC, datetime

    return http_date(datetime.fromtimestamp(ts, UTC))


def test_etag_and_304(tmp_path: Path, server: tuple[str, Feed]) -> None:
    url, feed = server
    policy = FetchPolicy(cache_dir=tmp_path)
    first = fetch(f"{url}/json", policy)
    assert not first.from_cache and first.path.read_bytes() == feed.body
    second = fetch(f"{url}/json", policy)
    assert second.from_cache and second.path.read_bytes() == feed.body
    assert feed.requests[1]["If-None-Match"] == '"v1"'
    assert "If-Modified-Since" in feed.requests[1]
    feed.body, feed.etag = b'{"zlib": {}}', '"v2"'
    assert fetch(f"{url}/json", policy).path.read_bytes() == b'{"zlib": {}}'


def test_offline_uses_the_cache_only(tmp_path: Path, server: tuple[str, Feed]) -> None:
    url, feed = server
    with pytest.raises(BadInput, match="offline, and not in the cache"):
        fetch(f"{url}/json", FetchPolicy(cache_dir=tmp_path, offline=True))
    fetch(f"{url}/json", FetchPolicy(cache_dir=tmp_path))
    n = len(feed.requests)
    got = fetch(f"{url}/json", FetchPolicy(cache_dir=tmp_path, offline=True))
    assert got.from_cache and len(feed.requests) == n
    assert any("offline" in note for note in got.notes)


def test_unreachable_falls_back_to_the_cache(tmp_path: Path, server: tuple[str, Feed]) -> None:
    url, feed = server
    policy = FetchPolicy(cache_dir=tmp_path, timeout_s=2)
    with pytest.raises(BadInput, match="cannot be fetched"):
        fetch("http://127.0.0.1:9/json", policy)  # nothing cached: no feed
    fetch(f"{url}/json", policy)
    feed.stop()  # type: ignore[operator]
    got = fetch(f"{url}/json", policy)
    assert got.from_cache and got.path.read_bytes() == feed.body
    assert any("unreachable" in note for note in got.notes)


def test_too_large(tmp_path: Path, server: tuple[str, Feed]) -> None:
    url, feed = server
    feed.body = b"x" * 5000
    with pytest.raises(BadInput, match="too large"):
        fetch(f"{url}/json", FetchPolicy(cache_dir=tmp_path, max_bytes=1000))
    assert not list(tmp_path.glob("feed-*.body"))


def test_truncated_download(tmp_path: Path, server: tuple[str, Feed]) -> None:
    url, feed = server
    feed.lie_about_length = 100  # the server promises more than it sends
    with pytest.raises(BadInput, match="truncated|cannot be fetched"):
        fetch(f"{url}/json", FetchPolicy(cache_dir=tmp_path, timeout_s=2))


def test_too_old(tmp_path: Path, server: tuple[str, Feed]) -> None:
    url, feed = server
    feed.last_modified = time.time() - 30 * 86400
    with pytest.raises(BadInput, match="too old"):
        fetch(f"{url}/json", FetchPolicy(cache_dir=tmp_path, max_age=timedelta(days=7)))
    path = tmp_path / "feed.json"
    path.write_text("{}")
    os.utime(path, (time.time() - 10 * 86400,) * 2)
    with pytest.raises(BadInput, match="too old"):
        fetch(str(path), FetchPolicy(cache_dir=tmp_path, max_age=timedelta(days=7)))
    assert fetch(str(path), FetchPolicy(cache_dir=tmp_path, max_age=timedelta(days=11)))


def test_missing(tmp_path: Path, server: tuple[str, Feed]) -> None:
    url, _ = server
    with pytest.raises(FeedMissing):
        fetch(f"{url}/missing", FetchPolicy(cache_dir=tmp_path))
    with pytest.raises(FeedMissing):
        fetch(str(tmp_path / "nope.json"), FetchPolicy(cache_dir=tmp_path))


def test_gzip_bomb(tmp_path: Path) -> None:
    path = tmp_path / "feed.json.gz"
    path.write_bytes(gzip.compress(b" " * (4 * 1024 * 1024)))
    policy = FetchPolicy(cache_dir=tmp_path, max_bytes=1024 * 1024)
    with pytest.raises(BadInput, match="decompresses past 1 MB"):
        fetch(str(path), policy).read_bytes(policy)


def test_truncated_gzip(tmp_path: Path) -> None:
    path = tmp_path / "feed.json.gz"
    path.write_bytes(gzip.compress(b'{"openssl": {}}' * 1000)[:-20])
    policy = FetchPolicy(cache_dir=tmp_path)
    with pytest.raises(BadInput, match="damaged or truncated"):
        fetch(str(path), policy).read_bytes(policy)
