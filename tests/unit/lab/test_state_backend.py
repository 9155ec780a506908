"""`lab up --state`: the lab's store on the local PostgreSQL server (a database of its own,
made and dropped with the lab) or a given URL; the config it writes names it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from orchestrator.errors import BadInput
from orchestrator.lab import files
from orchestrator.lab.database import drop_own_database, lab_state_url, own_database
from orchestrator.lab.lab import LabShape, LabState
from orchestrator.lab.paths import LabPaths
from tests.support import postgres


def paths(tmp_path: Path, name: str) -> LabPaths:
    return LabPaths(root=tmp_path / name, cache=tmp_path / "cache", instance=0)


def test_state_choices(tmp_path: Path) -> None:
    p = paths(tmp_path, "bluegreen-lab")
    assert lab_state_url(p, "sqlite") is None
    assert lab_state_url(p, "postgres://ops@db/bg") == "postgresql://ops@db/bg"
    with pytest.raises(BadInput, match="--state"):
        lab_state_url(p, "sqlite:///elsewhere.db")
    with pytest.raises(BadInput, match="PGPASSWORD"):
        lab_state_url(p, "postgresql://ops:pw@db/bg")
    doc = yaml.safe_load(files.bluegreen_config(p, ["web"], "postgresql:///x"))
    assert doc["state"] == {"url": "postgresql:///x"}
    assert "path" in yaml.safe_load(files.bluegreen_config(p, ["web"]))["state"]


def test_the_shape_keeps_its_state_url_and_old_state_files_still_load() -> None:
    state = LabState(LabShape(("web",), 1, "postgresql:///bluegreen_lab3"), [])
    assert LabState.from_json(state.to_json()).shape == state.shape
    doc = json.loads(state.to_json())
    del doc["shape"]["state_url"]  # written before `--state` existed
    assert LabState.from_json(json.dumps(doc)).shape.state_url is None


def test_postgresql_makes_the_labs_own_database_and_down_drops_only_that(
        tmp_path: Path) -> None:
    p = paths(tmp_path, f"bluegreen-labtest{__import__('os').getpid()}")
    url = lab_state_url(p, "postgresql")
    assert url == f"postgresql:///{own_database(p)}"
    assert lab_state_url(p, "postgresql") == url  # again: it exists, fine
    with postgres.admin() as conn:
        names = {r[0] for r in conn.execute("SELECT datname FROM pg_database").fetchall()}
    assert own_database(p) in names
    assert drop_own_database(p, "postgresql://ops@db/bg") == []  # never a given URL
    assert drop_own_database(p, url) == []
    with postgres.admin() as conn:
        names = {r[0] for r in conn.execute("SELECT datname FROM pg_database").fetchall()}
    assert own_database(p) not in names
