"""nginx readiness read from `nginx -T`'s text (the real nginx: tests/integration/
test_router_nginx.py): the confirm header with `always`, the access log's format, the
include of the live file and each service's proxy_pass, the master's pid file."""

from __future__ import annotations

import os
from pathlib import Path

from orchestrator.routers.nginx.readiness import (
    access_log,
    confirm_header,
    included,
    live_file,
    master_pid,
)
from orchestrator.routers.nginx.router import NginxRouter
from orchestrator.routers.nginx.settings import NginxSettings

GOOD = """
log_format bluegreen '$proxy_host $status '
                     '$upstream_response_time';
log_format main '$remote_addr $status';
server {
    location / {
        proxy_pass http://$bluegreen_web;
        add_header X-Bluegreen-Backend $proxy_host always;
        access_log /var/log/nginx/bluegreen.log bluegreen;
        access_log /var/log/nginx/main.log main;
    }
}
"""


def router(**extra: object) -> NginxRouter:
    values: dict[str, object] = {"kind": "nginx", "live_file": "/etc/nginx/bluegreen-live.conf",
                                 "access_log": "/var/log/nginx/bluegreen.log"}
    return NginxRouter(NginxSettings(**{**values, **extra}))  # type: ignore[arg-type]


def test_a_good_config_passes() -> None:
    dump = f"# configuration file /etc/nginx/bluegreen-live.conf:\n{GOOD}"
    assert included(router(), dump, GOOD, ["web"]).ok
    assert confirm_header(router(), GOOD).ok
    assert access_log(router(), GOOD).ok
    assert access_log(router(access_log=None), GOOD).ok  # no counters: nothing to need


def test_each_mistake_is_named_with_its_fix() -> None:
    check = included(router(), GOOD, GOOD, ["web"])
    assert check.ok is False and "include /etc/nginx/bluegreen-live.conf;" in check.fix
    dump = f"# configuration file /etc/nginx/bluegreen-live.conf:\n{GOOD}"
    check = included(router(), dump, GOOD, ["web", "api"])
    assert check.ok is False and "`proxy_pass http://$bluegreen_api;`" in check.fix
    bare = GOOD.replace(" always;", ";")
    check = confirm_header(router(), bare)
    assert check.ok is False and "without `always`" in check.detail
    assert check.fix.endswith("`add_header X-Bluegreen-Backend $proxy_host always;`")
    check = confirm_header(router(), GOOD.replace("$proxy_host always", "$upstream_addr always"))
    assert check.ok is False and "$upstream_addr" in check.detail
    check = confirm_header(router(confirm_header="X-Other"), GOOD)
    assert check.ok is False and "no `add_header X-Other" in check.detail
    check = access_log(router(), GOOD.replace("'$proxy_host $status '", "'$status $proxy_host '"))
    assert check.ok is False and "format bluegreen" in check.detail
    check = access_log(router(access_log="/var/log/nginx/main.log"), GOOD)
    assert check.ok is False and "format main" in check.detail
    check = access_log(router(access_log="/var/log/nginx/other.log"), GOOD)
    assert check.ok is False and "writes no access log" in check.detail


def test_the_live_file_and_the_master_pid(tmp_path: Path) -> None:
    live = tmp_path / "live.conf"
    check = live_file(router(live_file=str(live)))
    assert check.ok is False and "does not exist" in check.detail
    live.write_text("map $host $bluegreen_web { default web_blue; }\n")
    assert live_file(router(live_file=str(live))).ok
    live.write_text("server { listen 80; }\n")
    check = live_file(router(live_file=str(live)))
    assert check.ok is False and "not a line bluegreen writes" in check.detail
    pid = tmp_path / "nginx.pid"
    check = master_pid(f"pid {pid};")
    assert check.ok is False and str(pid) in check.detail
    pid.write_text(f"{os.getpid()}\n")  # this test's python: not an nginx master
    check = master_pid(f"pid {pid};")
    assert check.ok is False and "not an nginx master" in check.detail
