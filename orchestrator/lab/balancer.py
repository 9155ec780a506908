"""HAProxy in front of the lab's pools: one loopback frontend per service, map-based routing."""

from __future__ import annotations

import socket
import subprocess
from collections.abc import Mapping, Sequence
from pathlib import Path

from orchestrator.lab.hosts import HostSpec
from orchestrator.lab.paths import LabPaths
from orchestrator.lab.proc import run
from orchestrator.routers.registry import routing_lines


def frontend_port(paths: LabPaths, index: int) -> int:
    return paths.frontend_base_port + index


def exposure_maps(paths: LabPaths) -> tuple[str, str]:
    """The percent map and the exposed-backend map (router.percent_map_file and
    router.exposed_map_file in the lab's bluegreen.yml)."""
    return str(paths.percent_map_file), str(paths.exposed_map_file)


def render_config(paths: LabPaths, services: Sequence[str], hosts: Sequence[HostSpec], *,
                  ports: Mapping[str, int] | None = None, netns: str | None = None) -> str:
    """`ports`: each service's frontend port (default: numbered in order); `netns`: a
    site's namespace (sites.py): its servers are reached from there, each frontend also
    listens on its loopback, and the exporter is left out (one per lab, not per site)."""
    ports = ports or {s: frontend_port(paths, i) for i, s in enumerate(services)}
    lines = [
        "# written by `bluegreen lab up`",
        "global",
        f"    stats socket {paths.haproxy_socket} mode 600 level admin expose-fd listeners",
        f"    stats socket {paths.haproxy_operator_socket} mode 600 level operator",
        "    stats timeout 30s",
        f"    server-state-file {paths.server_state_file}",
        "",
        "defaults",
        "    mode http",
        "    timeout connect 2s",
        "    timeout client 30s",
        "    timeout server 30s",
        "    retries 2",
        "    option redispatch",
        "    load-server-state-from-file global",
        "",
    ]
    if netns is None:
        lines += [
            "frontend prometheus",  # HAProxy's built-in exporter, scraped by the lab's Prometheus
            f"    bind 127.0.0.1:{paths.haproxy_metrics_port}",
            "    http-request use-service prometheus-exporter if { path /metrics }",
            "",
        ]
    in_ns = "" if netns is None else f" namespace {netns}"
    for service in services:
        lines += [
            f"frontend fe_{service}",
            f"    bind 127.0.0.1:{ports[service]}",
            *([f"    bind 127.0.0.1:{ports[service]}{in_ns}"] if netns else []),
            "    http-response set-header X-Bluegreen-Backend %b",
            # progressive exposure and preview (routers/haproxy/exposure.py), then the live map
            *(f"    {line}" for line in routing_lines("haproxy")(
                service, f"{service}_blue", str(paths.map_file), *exposure_maps(paths))),
            "",
        ]
        for side in ("blue", "green"):
            lines += [
                f"backend {service}_{side}",
                "    balance roundrobin",
                "    option httpchk GET /health",
                "    http-check expect status 200",
                "    default-server check inter 1s fall 2 rise 2",
            ]
            lines += [
                f"    server {h.name} {h.address}:8080{in_ns}"
                for h in hosts
                if h.service == service and h.side == side
            ]
            lines.append("")
    return "\n".join(lines)


def write_files(paths: LabPaths, services: Sequence[str], hosts: Sequence[HostSpec], *,
                ports: Mapping[str, int] | None = None, netns: str | None = None) -> None:
    paths.haproxy.mkdir(parents=True, exist_ok=True)
    (paths.haproxy / "haproxy.cfg").write_text(
        render_config(paths, services, hosts, ports=ports, netns=netns))
    paths.map_file.write_text("".join(f"{s} {s}_blue\n" for s in services))
    for path in exposure_maps(paths):  # no exposure
        Path(path).write_text("")
        Path(path).chmod(0o644)
    paths.server_state_file.write_text("")


def check_ports_free(ports: Sequence[int]) -> list[int]:
    taken = []
    for port in ports:
        with socket.socket() as s:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                taken.append(port)
    return taken


def start(paths: LabPaths) -> int:
    cfg = paths.haproxy / "haproxy.cfg"
    run(["haproxy", "-c", "-q", "-f", str(cfg)])
    log = paths.logs / "haproxy.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "ab") as out:
        proc = subprocess.Popen(
            ["haproxy", "-W", "-db", "-f", str(cfg)],
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    return proc.pid


def haproxy_command(sock_path: Path, command: str, timeout: float = 2.0) -> str:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(timeout)
        s.connect(str(sock_path))
        s.sendall(command.encode() + b"\n")
        chunks = []
        while True:
            data = s.recv(65536)
            if not data:
                break
            chunks.append(data)
    return b"".join(chunks).decode()


def route_back_to_blue(paths: LabPaths, services: Sequence[str],
                       all_services: Sequence[str]) -> None:
    """`lab reset`: `services` back on blue with no exposure, in HAProxy's memory and in
    its files (`all_services`: every service of this HAProxy's map)."""
    for service in services:
        haproxy_command(paths.haproxy_socket,
                        f"set map {paths.map_file} {service} {service}_blue")
        for exposure_map in exposure_maps(paths):  # no exposure
            haproxy_command(paths.haproxy_socket, f"del map {exposure_map} {service}")
    paths.map_file.write_text("".join(f"{s} {s}_blue\n" for s in all_services))
    for exposure_map in exposure_maps(paths):
        Path(exposure_map).write_text("")


def wait_up(paths: LabPaths, hosts_per_side_total: int) -> None:
    """Until HAProxy sees every lab host UP (its health checks of every server)."""
    from orchestrator.lab.waits import wait

    def up() -> bool:
        if not paths.haproxy_socket.exists():
            return False
        stat = haproxy_command(paths.haproxy_socket, "show stat")
        rows = [r.split(",") for r in stat.splitlines() if r and not r.startswith("#")]
        live = [r for r in rows if r[1] not in ("FRONTEND", "BACKEND")]
        return bool(live) and all(r[17] == "UP" for r in live)

    wait(up, 30 + hosts_per_side_total, "HAProxy to see every lab host UP",
         f"see {paths.logs / 'haproxy.log'}")
