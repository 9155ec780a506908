"""Sites in bluegreen.yml: `site:` per service, `sites:` with their own inventory, ssh,
router and concurrency limit; each mistake one message naming file, field and fix."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from orchestrator.config.loaded import load_config
from orchestrator.config.models import DEFAULT_SITE
from tests.unit.config.test_loaded import bad, haproxy_router, minimal, write


def two_sites() -> dict[str, Any]:
    data = minimal()
    web = data["services"]["web"]
    data["services"]["api"] = {**web, "sides": {"blue": "api_blue", "green": "api_green"},
                               "site": "dc2"}
    data["services"]["db"] = {**web, "sides": {"blue": "db_blue", "green": "db_green"},
                              "site": "dc1"}
    data["sites"] = {
        "dc1": {"max_parallel": 2},
        "dc2": {"inventory": "dc2/hosts.yml",
                "ssh": {"known_hosts": "dc2/known_hosts", "user": "deploy"},
                "router": haproxy_router(map_file="/etc/haproxy/dc2.map",
                                         frontends={"api": "http://lb.dc2/"})},
    }
    return data


def test_without_sites_every_service_is_in_the_default_site(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, minimal()))
    assert config.sites == {DEFAULT_SITE: ["web"]}
    view = config.for_site(DEFAULT_SITE)
    assert view.router == config.router and list(view.services) == ["web"]
    assert view.site == DEFAULT_SITE


def test_a_site_view_has_its_own_reach_and_only_its_services(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, two_sites()))
    assert config.sites == {"default": ["web"], "dc1": ["db"], "dc2": ["api"]}
    assert config.site_of("api") == "dc2"
    dc2 = config.for_site("dc2")
    assert list(dc2.services) == ["api"]
    assert dc2.inventory_path == tmp_path / "dc2" / "hosts.yml"
    assert dc2.known_hosts_path == tmp_path / "dc2" / "known_hosts"
    assert dc2.model.ssh.user == "deploy"
    assert dc2.router.as_dict()["map_file"] == "/etc/haproxy/dc2.map"
    dc1 = config.for_site("dc1")  # nothing of its own but the limit: the top-level reach
    assert (dc1.inventory_path, dc1.router, list(dc1.services)) == (
        config.inventory_path, config.router, ["db"])
    assert config.model.sites["dc1"].max_parallel == 2
    assert sorted(config.services) == ["api", "db", "web"]  # the whole config is unchanged


def test_a_site_without_services_is_refused(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, two_sites()))
    data = two_sites()
    data["sites"]["dc3"] = {}
    config = load_config(write(tmp_path, data))
    for name in ("dc3", "nowhere"):
        try:
            config.for_site(name)
        except Exception as exc:  # noqa: BLE001 - the message is what is checked
            assert f"site {name!r} has no services" in str(exc)
            assert "dc1, dc2, default" in str(exc)
        else:
            raise AssertionError(f"site {name} was accepted")


def test_an_unknown_site_names_the_field_and_the_sites(tmp_path: Path) -> None:
    data = two_sites()
    data["services"]["db"]["site"] = "dc9"
    msg = bad(write(tmp_path, data))
    assert "services.db.site: unknown site 'dc9' (sites: dc1, dc2, default)" in msg
    assert "add `dc9:` under `sites:`" in msg


def test_frontends_of_another_sites_service_are_refused(tmp_path: Path) -> None:
    data = two_sites()
    data["sites"]["dc2"]["router"]["frontends"]["web"] = "http://lb.dc2/web"
    msg = bad(write(tmp_path, data))
    assert "sites.dc2.router.frontends names services that are not services of this " \
           "router's sites: web (services: api)" in msg
    data = two_sites()
    data["router"] = {**data["router"], "frontends": {"api": "http://lb/"}}
    msg = bad(write(tmp_path, data))
    assert "router.frontends names services that are not services of this router's " \
           "sites: api (services: db, web)" in msg


def test_a_site_router_is_checked_for_its_own_services(tmp_path: Path) -> None:
    data = two_sites()
    data["sites"]["dc2"]["router"] = {"kind": "command", "script": "./lb.sh"}
    msg = bad(write(tmp_path, data))
    assert "sites.dc2.router.frontends: no frontend URL for api" in msg


def test_bad_site_settings_name_the_field(tmp_path: Path) -> None:
    for dotted, value, expected in (
        ("max_parallel", 0, "sites.dc1.max_parallel: Input should be greater than or equal to 1"),
        ("routr", {}, "sites.dc1.routr: unknown field — did you mean 'router'?"),
        ("ssh", {"user": "x"}, "sites.dc1.ssh.known_hosts: required field is missing"),
    ):
        data = two_sites()
        data["sites"]["dc1"][dotted] = value
        assert expected in bad(write(tmp_path, data)), dotted
    data = two_sites()
    data["sites"]["Bad Name"] = {}
    assert "sites.Bad Name: invalid key: invalid service name" in bad(write(tmp_path, data))


def test_each_inventory_holds_the_services_of_its_sites(tmp_path: Path) -> None:
    from orchestrator.inventory import load_fleet

    def group(name: str, host: str, address: str) -> dict[str, Any]:
        return {name: {"hosts": {host: {"ansible_host": address}}}}

    top = {**group("web_blue", "w1", "10.0.0.1"), **group("web_green", "w2", "10.0.0.2"),
           **group("db_blue", "d1", "10.0.0.3"), **group("db_green", "d2", "10.0.0.4")}
    (tmp_path / "hosts.yml").write_text(json.dumps({"all": {"children": top}}))
    (tmp_path / "dc2").mkdir()
    dc2 = {**group("api_blue", "a1", "10.2.0.1"), **group("api_green", "a2", "10.2.0.2")}
    (tmp_path / "dc2" / "hosts.yml").write_text(json.dumps({"all": {"children": dc2}}))
    config = load_config(write(tmp_path, two_sites()))
    assert config.inventory_services == ["web", "db"]
    assert sorted(load_fleet(config).services) == ["db", "web"]  # api's groups: not here
    assert sorted(load_fleet(config.for_site("dc2")).services) == ["api"]
    assert [h.name for h in load_fleet(config.for_site("dc2")).service("api").green] == ["a2"]
