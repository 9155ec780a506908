"""Confirm a flip by a real request through the frontend: the response header that the
load balancer sets (`http-response set-header X-Bluegreen-Backend %b` in HAProxy) must
name the new side. Standard library only (the rollback fast path)."""

from __future__ import annotations

import socket
import time
from urllib.parse import urlsplit

from orchestrator.errors import RouterError


def confirm_by_request(
    service: str, url: str, header: str, accepted: set[str], timeout: float, window_s: float
) -> None:
    """GET `url` until `header` is one of `accepted` (HTTP status < 500), for up to
    `window_s` seconds; RouterError naming the last answer otherwise."""
    deadline = time.monotonic() + window_s
    while True:
        try:
            status, got = backend_header(url, header, timeout)
        except (OSError, ValueError) as exc:
            seen = f"request failed: {exc}"
        else:
            # A 4xx from the new side still tells us where the request went.
            if got in accepted and status < 500:
                return
            seen = f"HTTP {status}, {header}: {got}"
        if time.monotonic() >= deadline:
            wanted = " or ".join(sorted(accepted))
            raise RouterError(
                f"{service}: the routing already changed to {wanted}, but a request to {url} "
                f"did not confirm it within {window_s:.0f} s (last: {seen})",
                hint=f"check that the frontend answers and sets the `{header}` header",
            )
        time.sleep(0.1)


def backend_header(url: str, header: str, timeout: float) -> tuple[int, str | None]:
    """GET `url` once: (HTTP status, value of `header` or None).

    Plain http:// is spoken over a socket here (http.client and urllib pull in ssl and
    email: a third of rollback's start-up); https:// goes through urllib.
    """
    parts = urlsplit(url)
    if parts.scheme == "https":
        return _backend_header_urllib(url, header, timeout)
    if parts.scheme != "http" or not parts.hostname:
        raise ValueError(f"unsupported frontend URL {url!r} (use http:// or https://)")
    path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    host = parts.hostname
    request = (f"GET {path} HTTP/1.1\r\nHost: {parts.netloc}\r\nConnection: close\r\n"
               "User-Agent: bluegreen\r\n\r\n")
    with socket.create_connection((host, parts.port or 80), timeout=timeout) as conn:
        conn.sendall(request.encode("ascii"))
        head = b""
        while b"\r\n\r\n" not in head and len(head) < 65536:
            chunk = conn.recv(4096)
            if not chunk:
                break
            head += chunk
    lines = head.split(b"\r\n\r\n", 1)[0].decode("latin-1").split("\r\n")
    status_line = lines[0].split(" ", 2)
    if len(status_line) < 2 or not status_line[0].startswith("HTTP/") or \
            not status_line[1].isdigit():
        raise ValueError(f"not an HTTP reply: {lines[0][:80]!r}")
    wanted = header.lower()
    for line in lines[1:]:
        name, sep, value = line.partition(":")
        if sep and name.strip().lower() == wanted:
            return int(status_line[1]), value.strip()
    return int(status_line[1]), None


def _backend_header_urllib(url: str, header: str, timeout: float) -> tuple[int, str | None]:
    import urllib.error
    import urllib.request

    request = urllib.request.Request(url, headers={"Connection": "close"})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310
            return int(response.status), response.headers.get(header)
    except urllib.error.HTTPError as exc:
        got = exc.headers.get(header) if exc.headers is not None else None
        return exc.code, got


