"""`lab up --sites N` (orchestrator/lab/sites.py): the services shared round-robin between
the sites, a valid bluegreen.yml with `sites:` (each site's inventory and router), each
site's HAProxy reaching its servers from the site's namespace; bad shapes are exit 2."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from orchestrator.cli import main
from orchestrator.config.loaded import load_config
from orchestrator.errors import BadInput
from orchestrator.lab import balancer, files, sites
from orchestrator.lab.lab import LabShape, LabState
from orchestrator.lab.paths import LabPaths

SERVICES = ("web", "api", "db")


def lab_paths(tmp_path: Path) -> LabPaths:
    return LabPaths(root=tmp_path / "lab", cache=tmp_path / "cache", instance=4)


def test_services_are_shared_round_robin_and_each_site_has_its_namespace(
        tmp_path: Path) -> None:
    p = lab_paths(tmp_path)
    plan = sites.plan(p, SERVICES, 2)
    assert [(s.name, s.services, s.netns) for s in plan] == [
        ("site1", ["web", "db"], "bglab4-site1"), ("site2", ["api"], "bglab4-site2")]
    assert sites.site_paths(p, plan[1]).haproxy_socket == \
        p.root / "sites" / "site2" / "haproxy" / "admin.sock"
    assert sites.link_of(plan, "api") == ("bglab4-site2", sites.SITE_BRIDGE)
    assert sites.link_of([], "api") is None


@pytest.mark.parametrize(("shape", "words"), [
    (LabShape(("web",), 1, sites=2), "more sites than services"),
    (LabShape(SERVICES, 1, sites=10), "use 1..9"),
    (LabShape(SERVICES, 1, router="nginx", sites=2), "use HAProxy"),
])
def test_a_shape_sites_cannot_have_is_refused(shape: LabShape, words: str) -> None:
    with pytest.raises(BadInput) as info:
        shape.validate()
    assert words in info.value.message and "--sites" in info.value.message


def test_cli_refuses_too_many_sites_with_exit_2() -> None:
    out = CliRunner().invoke(main, ["lab", "up", "--sites", "10"])
    assert out.exit_code == 2 and "--sites" in out.output


def test_the_labs_config_with_sites_is_valid_and_each_site_sees_its_own_reach(
        tmp_path: Path) -> None:
    p = lab_paths(tmp_path)
    plan = sites.plan(p, SERVICES, 2)
    specs = LabShape(SERVICES, 1).host_specs(p.subnet_prefix)
    p.inventory.parent.mkdir(parents=True)
    p.inventory.write_text(files.inventory(p, SERVICES, specs))
    for site in plan:
        own = sites.site_paths(p, site).inventory
        own.parent.mkdir(parents=True)
        own.write_text(files.inventory(p, site.services, specs))
    p.config.write_text(files.bluegreen_config(p, SERVICES, "postgresql:///x", sites=plan))
    config = load_config(p.config)
    assert config.sites == {"site1": ["db", "web"], "site2": ["api"]}
    assert config.services["web"].bake.steps == []  # no Prometheus in a lab of sites
    two = config.for_site("site2")
    assert str(sites.site_paths(p, plan[1]).haproxy_socket) in str(two.router.socket)
    assert dict(two.router.frontends) == {"api": f"http://127.0.0.1:{p.frontend_base_port + 1}"}
    one = config.for_site("site1")  # site1's router is the top-level one
    assert one.router == config.router
    assert str(sites.site_paths(p, plan[0]).map_file) == str(one.router.map_file)
    assert set(one.router.frontends) == {"web", "db"}
    hosts = yaml.safe_load(sites.site_paths(p, plan[1]).inventory.read_text())
    assert set(hosts["all"]["children"]) == {"api"}


def test_a_sites_haproxy_reaches_its_servers_from_the_sites_namespace(tmp_path: Path) -> None:
    p = lab_paths(tmp_path)
    specs = LabShape(SERVICES, 1).host_specs(p.subnet_prefix)
    cfg = balancer.render_config(p, ["api"], [h for h in specs if h.service == "api"],
                                 ports={"api": 18481}, netns="bglab4-site2")
    servers = [line for line in cfg.splitlines() if line.strip().startswith("server ")]
    assert len(servers) == 2 and all(s.endswith(" namespace bglab4-site2") for s in servers)
    binds = [line.strip() for line in cfg.splitlines() if line.strip().startswith("bind ")]
    # loopback of the root namespace (tests, users) and of the site's (its worker's bake)
    assert binds == ["bind 127.0.0.1:18481", "bind 127.0.0.1:18481 namespace bglab4-site2"]
    assert "prometheus" not in cfg  # one exporter port per lab, not per site
    plain = balancer.render_config(p, SERVICES, specs)
    assert "namespace" not in plain and "frontend prometheus" in plain
    assert f"bind 127.0.0.1:{p.frontend_base_port + 2}" in plain


def test_lab_state_keeps_its_sites_and_old_state_files_load_without(tmp_path: Path) -> None:
    p = lab_paths(tmp_path)
    state = LabState(LabShape(("web", "api"), 1, "postgresql:///x", sites=2), [],
                     sites=sites.plan(p, ("web", "api"), 2))
    state.sites[1].haproxy_pid = 42
    back = LabState.from_json(state.to_json())
    assert back.shape == state.shape and back.sites == state.sites
    doc = json.loads(LabState(LabShape(), []).to_json())
    del doc["sites"], doc["shape"]["sites"]  # written before `--sites` existed
    old = LabState.from_json(json.dumps(doc))
    assert old.sites == [] and old.shape == LabShape()
