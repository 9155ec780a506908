"""The validated-config snapshot of the incident path: used only while it matches the
config file's bytes, ignored (never trusted, never fatal) when anything is off."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import yaml

from orchestrator.config import snapshot as config_snapshot
from orchestrator.config.loaded import load_config
from orchestrator.errors import BadInput
from orchestrator.routers.haproxy.settings import HAProxySettings, SSHTarget
from tests.unit.config.test_loaded import haproxy_router, minimal, write


@pytest.fixture
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = tmp_path / "cache"
    monkeypatch.setenv(config_snapshot.CACHE_ENV, str(path))
    return path


def haproxy_config(tmp_path: Path) -> Path:
    data = minimal()
    data["router"] = haproxy_router(
        frontends={"web": "http://127.0.0.1:8080"},
        ssh={"host": "lb1", "known_hosts": "/etc/ssh/known", "port": 2222},
    )
    data["state"] = {"path": "state/state.db"}
    return write(tmp_path, data)


def test_round_trip_gives_what_the_full_load_gave(tmp_path: Path, cache: Path) -> None:
    path = haproxy_config(tmp_path)
    full = load_config(path)
    written = config_snapshot.save(full)
    assert written is not None and written.parent == cache
    assert oct(written.stat().st_mode & 0o777) == "0o600"
    assert oct(cache.stat().st_mode & 0o777) == "0o700"
    snap = config_snapshot.load(path)
    assert snap is not None
    assert snap.router == full.router
    assert isinstance(snap.router, HAProxySettings) and isinstance(snap.router.ssh, SSHTarget)
    assert snap.state_path == full.state_path == tmp_path / "state" / "state.db"
    assert snap.service_names == ("web",)
    snap.service("web")
    with pytest.raises(BadInput, match="no service 'wbe'.*did you mean 'web'"):
        snap.service("wbe")


def test_changed_bytes_are_never_served_from_the_snapshot(tmp_path: Path, cache: Path) -> None:
    path = haproxy_config(tmp_path)
    config_snapshot.save(load_config(path))
    path.write_text(path.read_text() + "\n# a comment changes the bytes\n")
    assert config_snapshot.load(path) is None


@pytest.mark.parametrize("damage", ["json", "stamp", "router", "group-writable", "symlink"])
def test_a_damaged_or_untrusted_snapshot_is_ignored(
    tmp_path: Path, cache: Path, damage: str
) -> None:
    path = haproxy_config(tmp_path)
    written = config_snapshot.save(load_config(path))
    assert written is not None and config_snapshot.load(path) is not None
    doc = json.loads(written.read_text())
    if damage == "json":
        written.write_text("{not json")
    elif damage == "stamp":
        written.write_text(json.dumps({**doc, "stamp": "0:old"}))
    elif damage == "router":  # fails the settings' own checks
        written.write_text(json.dumps({**doc, "router": {**doc["router"], "timeout": -1}}))
    elif damage == "group-writable":
        written.chmod(0o620)
    else:
        other = tmp_path / "other.json"
        other.write_text(written.read_text())
        written.unlink()
        os.symlink(other, written)
    assert config_snapshot.load(path) is None


def test_no_snapshot_without_a_cache_dir_is_not_an_error(tmp_path: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    monkeypatch.setenv(config_snapshot.CACHE_ENV, str(blocker / "cache"))
    path = write(tmp_path, yaml.safe_dump(minimal()))
    assert config_snapshot.save(load_config(path)) is None
    assert config_snapshot.load(path) is None
