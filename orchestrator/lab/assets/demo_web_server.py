#!/usr/bin/python3
"""demo-web: the lab's demo service. Installed by the demo-web package; not part of bluegreen.

Maps the demo-openssl library file, so a process that was not restarted after an upgrade of
demo-openssl shows the deleted file in /proc/PID/maps. Answers /health, /version and /, and
/metrics (Prometheus text: the requests on / by status code and a histogram of their
durations, which the lab's Prometheus scrapes from every host).
"""

import json
import mmap
import os
import socket
import subprocess
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

VERSION = "@VERSION@"
BEHAVIOUR = "@BEHAVIOUR@"
# ok | broken (/health fails) | subtle (traffic fails after a while) | flaky (1 in 33 requests
# on / fails: about 3 %) | slow (+300 ms on every request on /); /health passes but for broken
LIBRARY = "/usr/lib/demo-openssl/libdemossl.so.3"
SUBTLE_AFTER = 10  # requests on / before the subtle version starts failing
FLAKY_EVERY = 33  # flaky: every 33rd request on / answers 500
SLOW_SECONDS = 0.3  # slow: added to every request on /

with open(LIBRARY, "rb") as _lib:
    MAPPED = mmap.mmap(_lib.fileno(), 0, prot=mmap.PROT_READ)
LIBRARY_VERSION = MAPPED[:64].split(b"\n", 1)[0].decode(errors="replace")
_served = 0
_lock = threading.Lock()
BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)
_codes: dict[int, int] = {}
_le = [0] * len(BUCKETS)
_count = 0
_sum = 0.0


def _observe(code: int, seconds: float) -> None:
    global _count, _sum
    with _lock:
        _codes[code] = _codes.get(code, 0) + 1
        _count += 1
        _sum += seconds
        for i, bound in enumerate(BUCKETS):
            if seconds <= bound:
                _le[i] += 1


def _metrics() -> str:
    with _lock:
        lines = ["# HELP demo_web_requests_total Requests on / answered, by status code.",
                 "# TYPE demo_web_requests_total counter"]
        lines += [f'demo_web_requests_total{{code="{c}"}} {n}' for c, n in sorted(_codes.items())]
        lines += ["# HELP demo_web_request_duration_seconds Time to answer a request on /.",
                  "# TYPE demo_web_request_duration_seconds histogram"]
        lines += [f'demo_web_request_duration_seconds_bucket{{le="{b}"}} {n}'
                  for b, n in zip(BUCKETS, _le, strict=True)]
        lines += [f'demo_web_request_duration_seconds_bucket{{le="+Inf"}} {_count}',
                  f"demo_web_request_duration_seconds_sum {_sum}",
                  f"demo_web_request_duration_seconds_count {_count}"]
    return "\n".join(lines) + "\n"


def _read(path: str) -> str:
    try:
        with open(path) as f:
            return f.read().strip()
    except OSError:
        return "unknown"


def _installed(pkg: str) -> str:
    out = subprocess.run(["dpkg-query", "-W", "-f=${Version}", pkg], capture_output=True, text=True)
    return out.stdout.strip() or "not-installed"


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: object) -> None:
        pass

    def _send(self, code: int, body: str, ctype: str = "text/plain") -> None:
        data = body.encode()
        self.send_response(code)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self) -> None:
        global _served
        if self.path == "/health":
            if BEHAVIOUR == "broken":
                self._send(500, "unhealthy: demo-web " + VERSION + " cannot start its worker\n")
            else:
                self._send(200, "ok\n")
        elif self.path == "/version":
            info = {
                "hostname": socket.gethostname(),
                "service": _read("/etc/bluegreen-lab/service"),
                "side": _read("/etc/bluegreen-lab/side"),
                "version": VERSION,
                "library_in_use": LIBRARY_VERSION,
                "packages": {p: _installed(p) for p in ("demo-web", "demo-openssl")},
            }
            self._send(200, json.dumps(info) + "\n", "application/json")
        elif self.path == "/metrics":
            self._send(200, _metrics(), "text/plain; version=0.0.4")
        else:
            began = time.monotonic()
            with _lock:
                _served += 1
                served = _served
            if BEHAVIOUR == "slow":
                time.sleep(SLOW_SECONDS)
            if (BEHAVIOUR == "subtle" and served > SUBTLE_AFTER) or (
                    BEHAVIOUR == "flaky" and served % FLAKY_EVERY == 0):
                self._send(500, "internal error\n")
                _observe(500, time.monotonic() - began)
            else:
                side = _read("/etc/bluegreen-lab/side")
                self._send(200, f"hello from {socket.gethostname()} ({side}) demo-web {VERSION}\n")
                _observe(200, time.monotonic() - began)


if __name__ == "__main__":
    port = int(os.environ.get("DEMO_WEB_PORT", "8080"))
    ThreadingHTTPServer.allow_reuse_address = True
    ThreadingHTTPServer(("0.0.0.0", port), Handler).serve_forever()
