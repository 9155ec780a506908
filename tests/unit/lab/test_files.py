"""The lab's bluegreen.yml (`lab up`): web bakes as steps judged on the lab's Prometheus (a
lab with HAProxy), and the file loads as a real config; without the steps it is the plain
bake (what tests not about the bake run with); an older lab's file is told apart."""

from __future__ import annotations

from pathlib import Path

import yaml

from orchestrator.config.loaded import load_config
from orchestrator.lab import files
from orchestrator.lab.paths import LabPaths
from tests.support.lab import no_steps


def lab_files(tmp_path: Path, router: str) -> Path:
    p = LabPaths(root=tmp_path / "lab", cache=tmp_path / "cache", instance=0)
    p.root.mkdir()
    config = p.root / "bluegreen.yml"
    config.write_text(files.bluegreen_config(p, ["web", "api"], router=router))
    return config


def test_web_bakes_as_steps_by_default_and_without_them_as_before(tmp_path: Path) -> None:
    config = lab_files(tmp_path, "haproxy")
    doc = yaml.safe_load(config.read_text())
    web, api = doc["services"]["web"]["bake"], doc["services"]["api"]["bake"]
    assert [s["percent"] for s in web["steps"]] == [20, 50, 100]
    assert web["analysis"]["source"].startswith("http://127.0.0.1:")
    assert "steps" not in api and files.has_steps(config)
    assert no_steps(doc)["services"]["web"]["bake"] == api == files.plain_bake()
    loaded = load_config(config)
    assert [s.percent for s in loaded.services["web"].bake.exposure_steps] == [20, 50]
    assert loaded.services["api"].bake.exposure_steps == []


def test_no_prometheus_no_steps_and_an_older_file_is_told_apart(tmp_path: Path) -> None:
    nginx = lab_files(tmp_path, "nginx")  # the nginx lab has no Prometheus
    assert "steps" not in yaml.safe_load(nginx.read_text())["services"]["web"]["bake"]
    assert not files.has_steps(nginx)  # lab.problems asks this of HAProxy labs only
    assert not files.has_steps(tmp_path / "missing.yml")
    api_only = tmp_path / "api.yml"
    api_only.write_text(yaml.safe_dump({"services": {"api": {"bake": {}}}}))
    assert files.has_steps(api_only)
