"""nginx in front of the lab's pools (`lab up --router nginx`): one loopback frontend per
service, configured as the README tells users to (bluegreen's live file included, proxy_pass
to `$bluegreen_SERVICE`, the confirm header, the `bluegreen` access log format). nginx runs
as the lab's own process (`-g 'daemon off;'`); a flip reloads it by its pid file."""

from __future__ import annotations

import os
import signal
import subprocess
from collections.abc import Sequence
from pathlib import Path

from orchestrator.lab.balancer import frontend_port
from orchestrator.lab.hosts import HostSpec
from orchestrator.lab.paths import LabPaths
from orchestrator.lab.proc import run

NGINX = "/usr/sbin/nginx"


def conf(paths: LabPaths) -> Path:
    return paths.nginx / "nginx.conf"


def live_file(paths: LabPaths) -> Path:
    return paths.nginx / "bluegreen-live.conf"


def access_log(paths: LabPaths) -> Path:
    return paths.logs / "nginx-access.log"


def render_config(paths: LabPaths, services: Sequence[str], hosts: Sequence[HostSpec]) -> str:
    d = paths.nginx
    lines = [
        "# written by `bluegreen lab up --router nginx`",
        "user root;",
        "worker_processes 1;",
        f"pid {d / 'nginx.pid'};",
        f"error_log {paths.logs / 'nginx-error.log'} warn;",
        "events { worker_connections 1024; }",
        "http {",
        "    access_log off;",
        "    log_format bluegreen '$proxy_host $status $upstream_response_time';",
        *(f"    {kind}_temp_path {d / ('tmp-' + kind)};"
          for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")),
        f"    include {live_file(paths)};",
    ]
    for i, service in enumerate(services):
        for side in ("blue", "green"):
            servers = " ".join(f"server {h.address}:8080 max_fails=1 fail_timeout=2s;"
                               for h in hosts if h.service == service and h.side == side)
            lines.append(f"    upstream {service}_{side} {{ {servers} }}")
        lines += [
            "    server {",
            f"        listen 127.0.0.1:{frontend_port(paths, i)};",
            "        location / {",
            f"            proxy_pass http://$bluegreen_{service};",
            "            proxy_next_upstream error timeout http_502;",
            "            add_header X-Bluegreen-Backend $proxy_host always;",
            f"            access_log {access_log(paths)} bluegreen;",
            "        }",
            "    }",
        ]
    lines.append("}")
    return "\n".join(lines) + "\n"


def live_text(services: Sequence[str], side: str = "blue") -> str:
    return "".join(f"map $host $bluegreen_{s} {{ default {s}_{side}; }}\n" for s in services)


def write_files(paths: LabPaths, services: Sequence[str], hosts: Sequence[HostSpec]) -> None:
    paths.nginx.mkdir(parents=True, exist_ok=True)
    conf(paths).write_text(render_config(paths, services, hosts))
    live_file(paths).write_text(live_text(services))
    live_file(paths).chmod(0o644)


def start(paths: LabPaths) -> int:
    run([NGINX, "-t", "-q", "-c", str(conf(paths))])
    log = paths.logs / "nginx.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "ab") as out:
        proc = subprocess.Popen([NGINX, "-c", str(conf(paths)), "-g", "daemon off;"],
                                stdin=subprocess.DEVNULL, stdout=out,
                                stderr=subprocess.STDOUT, start_new_session=True)
    return proc.pid


def wait_up(paths: LabPaths, services: Sequence[str], timeout: float = 30.0) -> None:
    """Until every frontend answers with the confirm header (nginx has no health checks)."""
    from orchestrator.lab.waits import wait
    from orchestrator.routers.confirm import backend_header

    def up() -> bool:
        for i, service in enumerate(services):
            try:
                _status, got = backend_header(f"http://127.0.0.1:{frontend_port(paths, i)}/",
                                              "X-Bluegreen-Backend", 2.0)
            except (OSError, ValueError):
                return False
            if got not in (f"{service}_blue", f"{service}_green"):
                return False
        return True

    wait(up, timeout, "nginx to answer on every frontend",
         f"see {paths.logs / 'nginx-error.log'}")


def reload(pid: int) -> None:
    """A graceful reload (what `nginx -s reload` sends)."""
    os.kill(pid, signal.SIGHUP)


def reset_live(paths: LabPaths, services: Sequence[str], pid: int) -> None:
    """Every service back on blue (the lab's reset)."""
    live_file(paths).write_text(live_text(services))
    reload(pid)
