"""review5 B1: a command run by hand on a service of a site with reach of its own (its own
router, inventory or ssh) uses that site's settings (`LoadedConfig.for_service`), in the
full load and in rollback's config snapshot alike; a campaign run on one machine (no
--workers) refuses such a service with exit 2 before anything changes. Two command-router
scripts log who asked them."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from orchestrator.campaign.model import campaign_from_dict
from orchestrator.campaign.runner import CampaignRunner
from orchestrator.cli import main
from orchestrator.config import snapshot
from orchestrator.config.loaded import load_config
from orchestrator.errors import BadInput
from orchestrator.testing import FakeRouter, fake_config, fake_fleet

SCRIPT = """#!/bin/sh
echo "$*" >> {log}
case "$1" in
  live) echo '{{"live": "blue"}}' ;;
  health) echo '{{"servers": [{{"name": "h1", "status": "UP"}}]}}' ;;
  counters) echo '{{"responses": 0, "errors_5xx": 0}}' ;;
  *) echo '{{"ok": false, "error": "not in this test"}}' ;;
esac
"""


def router_script(directory: Path, name: str) -> dict[str, Any]:
    script = directory / f"{name}.sh"
    script.write_text(SCRIPT.format(log=directory / f"{name}.log"))
    script.chmod(0o755)
    return {"kind": "command", "script": str(script), "counters": True}


def asked(directory: Path, name: str) -> list[str]:
    log = directory / f"{name}.log"
    return log.read_text().splitlines() if log.exists() else []


@pytest.fixture
def config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Any:
    monkeypatch.setenv(snapshot.CACHE_ENV, str(tmp_path / "cache"))
    fake_config(tmp_path, ("web", "api", "db"))
    doc = json.loads((tmp_path / "bluegreen.yml").read_text())
    doc["router"] = router_script(tmp_path, "top")
    doc["sites"] = {"dc1": {"max_parallel": 1},  # no reach of its own: the top-level one
                    "dc2": {"router": router_script(tmp_path, "dc2")}}
    doc["services"]["api"]["site"] = "dc2"
    doc["services"]["db"]["site"] = "dc1"
    (tmp_path / "bluegreen.yml").write_text(json.dumps(doc))
    return load_config(tmp_path / "bluegreen.yml")


def test_for_service_is_the_sites_view_only_where_the_site_has_reach(config: Any) -> None:
    assert config.sites_with_reach == ["dc2"]
    api = config.for_service("api")
    assert (api.site, list(api.services)) == ("dc2", ["api"])
    assert api.router.as_dict()["script"].endswith("dc2.sh")
    assert config.for_service("web") is config and config.for_service("db") is config
    assert config.for_service("nope") is config  # the command names the unknown service
    assert [(v.site, sorted(v.services)) for v in config.views()] == [
        (None, ["db", "web"]), ("dc2", ["api"])]


def test_status_asks_each_services_own_router(config: Any, tmp_path: Path) -> None:
    out = CliRunner().invoke(main, ["-c", str(config.path), "status", "api", "--json"])
    assert out.exception is None or isinstance(out.exception, SystemExit), out.output
    assert json.loads(out.output)["live"] == "blue", out.output
    assert any(line.startswith("live api") for line in asked(tmp_path, "dc2"))
    assert not any("api" in line for line in asked(tmp_path, "top"))
    out = CliRunner().invoke(main, ["-c", str(config.path), "status", "--json"])
    docs = json.loads(out.output)
    assert sorted(d["service"] for d in docs) == ["api", "db", "web"], out.output
    assert not any("api" in line for line in asked(tmp_path, "top"))
    assert not any(" web" in line or " db" in line for line in asked(tmp_path, "dc2"))
    assert any(line.startswith("live web") for line in asked(tmp_path, "top"))


def test_rollbacks_snapshot_keeps_the_sites_router(config: Any) -> None:
    snapshot.save(config)
    fast = snapshot.load(config.path)
    assert fast is not None
    assert fast.for_service("api").router == config.for_service("api").router
    assert fast.for_service("web").router == config.router
    assert fast.for_service("api").router != config.router


def test_a_campaign_on_one_machine_refuses_a_service_of_a_site_with_reach(
        config: Any, tmp_path: Path) -> None:
    camp = campaign_from_dict({
        "name": "c1", "advisories": [{"id": "DEMO-1", "packages": {"demo-web": "1.0.1"}}],
        "waves": [{"services": ["web", "db"]}, {"services": ["api"]}]})
    (tmp_path / "c1.yml").write_text("# the campaign\n")
    from orchestrator.traffic import open_store

    store = open_store(config)
    try:
        runner = CampaignRunner(config, store, FakeRouter(), actor="ci",
                                fleet=fake_fleet(config))
        with pytest.raises(BadInput) as info:
            runner.run(camp, str(tmp_path / "c1.yml"))
        assert store.list_runs() == []  # nothing started
    finally:
        store.close()
    assert "services.api.site: site 'dc2' has its own inventory, ssh or router" in str(
        info.value)
    assert "--workers" in (info.value.hint or "")


def test_rollback_from_the_snapshot_asks_the_sites_router(config: Any, tmp_path: Path) -> None:
    snapshot.save(config)  # what every full load leaves: rollback starts from it
    out = CliRunner().invoke(main, ["-c", str(config.path), "rollback", "api", "--reason",
                                    "INC-1"])
    assert out.exit_code == 0, out.output
    assert "api: no earlier flip to roll back; traffic stays on blue" in out.output
    assert any("api" in line for line in asked(tmp_path, "dc2")), out.output
    assert not any("api" in line for line in asked(tmp_path, "top")), out.output


def groups(*services: str) -> str:
    return json.dumps({"all": {"children": {f"{s}_{side}": {"hosts": {f"{s}-{side}": {
        "ansible_host": "127.0.0.1", "ansible_port": 9 + i}}}  # refused at once
        for s in services for i, side in enumerate(("blue", "green"))}}})


def own_inventory(config: Any, tmp_path: Path) -> None:
    """dc2 gets an inventory of its own: api is in no other."""
    doc = json.loads(config.path.read_text())
    (tmp_path / "hosts.yml").write_text(groups("web", "db"))
    (tmp_path / "dc2").mkdir()
    (tmp_path / "dc2" / "hosts.yml").write_text(groups("api"))
    doc["sites"]["dc2"]["inventory"] = "dc2/hosts.yml"
    config.path.write_text(json.dumps(doc))


def test_doctor_checks_each_site_through_its_own_router_and_inventory(
        config: Any, tmp_path: Path) -> None:
    own_inventory(config, tmp_path)
    out = CliRunner().invoke(main, ["-c", str(config.path), "doctor", "--json"])
    assert out.exit_code in (0, 1), out.output  # checks may fail; bad input (2) may not
    assert any(line.startswith("health api") for line in asked(tmp_path, "dc2")), out.output
    assert not any("api" in line for line in asked(tmp_path, "top"))
    assert any(line.startswith("health web") for line in asked(tmp_path, "top"))


def test_advisories_read_each_site_through_its_inventory_and_router(
        config: Any, tmp_path: Path) -> None:
    own_inventory(config, tmp_path)
    feed = tmp_path / "feed.json"
    feed.write_text("[]")
    out = CliRunner().invoke(main, ["-c", str(config.path), "exposure", "--offline",
                                    "--feed", f"osv:{feed}", "--json"])
    assert out.exit_code in (0, 1, 3), out.output  # hosts unread; bad input (2) may not
    doc = json.loads(out.output)
    assert {"api", "web"} <= set(doc["services"]), doc
    assert any(line.startswith("live api") for line in asked(tmp_path, "dc2")), out.output
    assert not any("api" in line for line in asked(tmp_path, "top"))
