"""A real nginx on loopback in front of two tiny HTTP backends (blue and green), configured
as the README tells users to (include the live file, proxy_pass to $bluegreen_web, the
confirm header, the `bluegreen` access log format).

    with running_nginx(tmp_path) as lb:
        settings = lb.settings()          # NginxSettings
        lb.get("/")                       # -> ("web_blue", "blue")
        lb.reload()

nginx runs as `nginx -c CONF -g 'daemon off;'` (its master is our child); only that PID is
ever signalled. Every wait has a deadline.
"""

from __future__ import annotations

import signal
import subprocess
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from orchestrator.routers.nginx.settings import NginxSettings
from tests.support.haproxy_fixture import Backend, free_port, wait_until

NGINX = "/usr/sbin/nginx"
SERVICE = "web"
HEADER = "X-Bluegreen-Backend"

CONFIG = """\
user root;
worker_processes 1;
pid {dir}/nginx.pid;
error_log {dir}/error.log warn;
events {{ worker_connections 512; }}
http {{
    access_log off;
    log_format bluegreen '$proxy_host $status $upstream_response_time';
    client_body_temp_path {dir}/tmp-body;
    proxy_temp_path {dir}/tmp-proxy;
    fastcgi_temp_path {dir}/tmp-fastcgi;
    uwsgi_temp_path {dir}/tmp-uwsgi;
    scgi_temp_path {dir}/tmp-scgi;
    include {dir}/bluegreen-live.conf;
    upstream web_blue {{ server 127.0.0.1:{blue}; }}
    upstream web_green {{ server 127.0.0.1:{green}; }}
    server {{
        listen 127.0.0.1:{port};
        location / {{
            proxy_pass http://$bluegreen_web;
            add_header {header} $proxy_host always;
            access_log {dir}/access.log bluegreen;
        }}
    }}
}}
"""


@dataclass
class NginxLab:
    dir: Path
    port: int
    backends: dict[str, Backend]
    process: subprocess.Popen[bytes]

    @property
    def conf(self) -> Path:
        return self.dir / "nginx.conf"

    @property
    def live_file(self) -> Path:
        return self.dir / "bluegreen-live.conf"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/"

    def settings(self, **overrides: object) -> NginxSettings:
        values: dict[str, object] = {
            "kind": "nginx", "live_file": str(self.live_file), "conf": str(self.conf),
            "nginx": NGINX, "frontends": {SERVICE: self.url},
            "access_log": str(self.dir / "access.log"), "drain_seconds": 2.0, "timeout": 2.0,
        }
        return NginxSettings(**{**values, **overrides})  # type: ignore[arg-type]

    def get(self, path: str = "/") -> tuple[str | None, str]:
        with urllib.request.urlopen(self.url.rstrip("/") + path, timeout=5) as reply:
            return reply.headers.get(HEADER), reply.read().decode().strip()

    def reload(self) -> None:
        self.process.send_signal(signal.SIGHUP)


@contextmanager
def running_nginx(tmp: Path, live: str = "web_blue") -> Iterator[NginxLab]:
    directory = tmp / "nginx"
    directory.mkdir()
    backends = {side: Backend(side) for side in ("blue", "green")}  # type: ignore[misc]
    for backend in backends.values():
        backend.start()
    port = free_port()
    (directory / "bluegreen-live.conf").write_text(
        f"map $host $bluegreen_web {{ default {live}; }}\n")
    (directory / "nginx.conf").write_text(CONFIG.format(
        dir=directory, blue=backends["blue"].port, green=backends["green"].port, port=port,
        header=HEADER))
    process = subprocess.Popen([NGINX, "-c", str(directory / "nginx.conf"), "-g", "daemon off;"],
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    lab = NginxLab(directory, port, backends, process)
    try:
        def answering() -> bool:
            assert process.poll() is None, process.stderr.read() if process.stderr else ""
            return lab.get("/")[0] == live

        wait_until(answering, 15, "nginx to answer")
        yield lab
    finally:
        process.send_signal(signal.SIGQUIT)  # graceful: workers end with the master
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=5)
        for backend in backends.values():
            backend.stop()
