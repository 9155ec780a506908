"""`bluegreen init` on a handwritten INI inventory (group_vars beside it) and a handwritten
haproxy.cfg: the written bluegreen.yml validates, the adapted config passes `haproxy -c`
(the real HAProxy binary) with the initial map, nothing is ever written over."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from orchestrator.cli.app import main
from orchestrator.config.loaded import load_config
from orchestrator.errors import BadInput
from orchestrator.onboard.init import InitRequest, find_pairs, parse_pair, run_init
from orchestrator.routers.haproxy.adapt import adapt_config

INVENTORY = """\
[shop_blue]
shop-b1 ansible_host=10.0.0.11
shop-b2 ansible_host=10.0.0.12

[shop_green]
shop-g1 ansible_host=10.0.0.21
shop-g2 ansible_host=10.0.0.22

[db]
db1 ansible_host=10.0.0.50
"""

HAPROXY_CFG = """\
global
    log /dev/log local0
    stats socket /run/haproxy/admin.sock mode 660 level operator
    maxconn 2000

defaults
    mode http
    timeout connect 5s
    timeout client 30s
    timeout server 30s

frontend shop
    bind *:8080
    default_backend shop_green

backend shop_blue
    option httpchk GET /health
    server b1 10.0.0.11:8080 check
    server b2 10.0.0.12:8080 check

backend shop_green
    option httpchk GET /health
    server g1 10.0.0.21:8080 check
    server g2 10.0.0.22:8080 check
"""


@pytest.fixture
def fleet(tmp_path: Path) -> Path:
    (tmp_path / "inv").mkdir()
    (tmp_path / "inv" / "hosts.ini").write_text(INVENTORY)
    (tmp_path / "inv" / "group_vars").mkdir()
    (tmp_path / "inv" / "group_vars" / "all.yml").write_text("ansible_user: deploy\n")
    (tmp_path / "haproxy.cfg").write_text(HAPROXY_CFG)
    return tmp_path


def request(tmp: Path, **kw: object) -> InitRequest:
    base: dict[str, object] = {"inventory": tmp / "inv" / "hosts.ini",
                               "output": tmp / "out" / "bluegreen.yml",
                               "haproxy_cfg": tmp / "haproxy.cfg",
                               "map_file": str(tmp / "etc" / "bluegreen.map")}
    return InitRequest(**{**base, **kw})  # type: ignore[arg-type]


def test_init_writes_a_valid_config_an_adapted_haproxy_cfg_and_the_map(fleet: Path) -> None:
    result = run_init(request(fleet))
    out = fleet / "out"
    assert sorted(p.name for p in out.iterdir()) == [
        "bluegreen.exposed.map", "bluegreen.map", "bluegreen.percent.map", "bluegreen.yml",
        "haproxy.cfg.bluegreen"]
    assert (out / "bluegreen.percent.map").read_text() == ""
    loaded = load_config(out / "bluegreen.yml")
    assert list(loaded.model.services) == ["shop"]
    shop = loaded.model.services["shop"]
    assert (shop.sides.blue, shop.sides.green) == ("shop_blue", "shop_green")
    router = loaded.model.router
    assert router.kind == "haproxy"
    assert router.socket == "unix:///run/haproxy/admin.sock"  # type: ignore[union-attr]
    assert router.frontends == {"shop": "http://127.0.0.1:8080"}
    assert loaded.inventory_path.resolve() == (fleet / "inv" / "hosts.ini").resolve()
    # the side that routes today is the map's (and the default's) backend
    assert (out / "bluegreen.map").read_text() == "shop shop_green\n"
    assert result.services["shop"]["live"] == "green"
    adapted = (out / "haproxy.cfg.bluegreen").read_text()
    assert "level admin  # bluegreen" in adapted and "level operator" not in adapted
    use = f"use_backend %[str(shop),map({fleet}/etc/bluegreen.map,shop_green)]"
    assert use in adapted
    # progressive exposure and preview: read before the live map
    percent = f"map_str_int({fleet}/etc/bluegreen.percent.map,0)"
    assert adapted.index(percent) < adapted.index(use)
    assert "{ req.hdr(X-Bluegreen-Preview) -m str 1 }" in adapted
    assert "{ req.cook(bluegreen_preview) -m str 1 }" in adapted
    assert "http-response set-header X-Bluegreen-Backend %b" in adapted
    assert adapted.count("load-server-state-from-file global") == 2
    assert "server-state-file /var/lib/haproxy/server-state" in adapted
    # every line the user wrote is still there, in order
    kept = [line for line in adapted.splitlines() if "# bluegreen" not in line]
    assert kept == [line for line in HAPROXY_CFG.splitlines()
                    if "stats socket" not in line]
    assert result.diff.startswith(f"--- {fleet}/haproxy.cfg")
    assert any("level operator" in note for note in result.notes)


def test_the_adapted_config_passes_haproxy_check(fleet: Path) -> None:
    haproxy = shutil.which("haproxy") or "/usr/sbin/haproxy"
    run_init(request(fleet))
    (fleet / "etc").mkdir()
    for name in ("bluegreen.map", "bluegreen.percent.map", "bluegreen.exposed.map"):
        shutil.copy(fleet / "out" / name, fleet / "etc" / name)
    check = subprocess.run([haproxy, "-c", "-f", str(fleet / "out" / "haproxy.cfg.bluegreen")],
                           capture_output=True, text=True, timeout=30)
    assert check.returncode == 0, check.stdout + check.stderr


def test_init_never_writes_over_a_file_and_writes_nothing_then(fleet: Path) -> None:
    (fleet / "out").mkdir()
    (fleet / "out" / "bluegreen.map").write_text("mine\n")
    with pytest.raises(BadInput, match="exists already"):
        run_init(request(fleet))
    assert [p.name for p in (fleet / "out").iterdir()] == ["bluegreen.map"]
    assert (fleet / "out" / "bluegreen.map").read_text() == "mine\n"


def test_init_errors_name_the_fix(fleet: Path) -> None:
    with pytest.raises(BadInput, match="no group pairs") as none:
        run_init(request(fleet, pairs={}, inventory=_only_db(fleet)))
    assert "--service NAME=BLUE_GROUP,GREEN_GROUP" in (none.value.hint or "")
    with pytest.raises(BadInput, match="group 'shop_gren'"):
        run_init(request(fleet, pairs={"shop": ("shop_blue", "shop_gren")}))
    with pytest.raises(BadInput, match="missing: api_blue, api_green"):
        run_init(request(fleet, pairs={"api": ("shop_blue", "shop_green")}))
    with pytest.raises(BadInput, match="expected NAME=BLUE_GROUP,GREEN_GROUP"):
        parse_pair("shop=shop_blue")
    assert not (fleet / "out").exists()


def _only_db(tmp: Path) -> Path:
    path = tmp / "db.ini"
    path.write_text("[db]\ndb1 ansible_host=10.0.0.50\n")
    return path


def test_pairs_are_found_by_name() -> None:
    groups = {"web_blue": 2, "web_green": 2, "api_blue": 1, "db": 3}
    assert find_pairs(groups) == {"web": ("web_blue", "web_green")}


def test_adapter_keeps_an_admin_socket_and_existing_state_settings() -> None:
    text = HAPROXY_CFG.replace("level operator", "level admin").replace(
        "    maxconn 2000", "    maxconn 2000\n    server-state-file /srv/st").replace(
        "    mode http", "    mode http\n    load-server-state-from-file global")
    adapted = adapt_config(text, {"shop": ("shop_blue", "shop_green")}, map_file="/m")
    assert adapted.server_state_file == "/srv/st" and adapted.socket == "/run/haproxy/admin.sock"
    assert "load-server-state-from-file global  # bluegreen" not in adapted.text
    assert "stats socket" not in adapted.diff and not adapted.notes


def test_the_cli_prints_the_diff_and_the_next_steps(fleet: Path) -> None:
    args = ["init", "--inventory", str(fleet / "inv" / "hosts.ini"), "--haproxy-cfg",
            str(fleet / "haproxy.cfg"), "--map-file", str(fleet / "etc" / "bluegreen.map"),
            "-o", str(fleet / "out" / "bluegreen.yml")]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    assert "+    use_backend %[str(shop)" in result.output
    assert "doctor" in result.output and "install -m 644" in result.output
    again = CliRunner().invoke(main, [*args, "--json"])
    assert again.exit_code == 2 and "exists already" in again.output
    doc = yaml.safe_load((fleet / "out" / "bluegreen.yml").read_text())
    assert doc["services"]["shop"]["patch"] == {"security_updates": True}
    json.dumps(doc)
