"""Errors a newcomer will hit with the lab: one clear message with the fix, nothing left."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from orchestrator.errors import LabError
from orchestrator.lab.lab import Lab, LabShape
from orchestrator.lab.paths import LabPaths

pytestmark = pytest.mark.lab


def test_another_lab_with_another_shape_is_refused(lab: Lab) -> None:
    with pytest.raises(LabError) as err:
        lab.up(LabShape(("web",), 1))
    assert "another lab is running" in str(err.value)
    assert "lab down" in str(err.value)
    assert not lab.status()["problems"]


def _unused_instance(tmp_path: Path) -> LabPaths:
    """Paths of a lab instance nobody runs here (not ours, no bridge): other labs may be up
    side by side (a newcomer's demo lab, other checkouts' tests) and own their ports."""
    ours = LabPaths.default().instance
    for n in (7, 6, 5, 4, 3, 2, 1, 8, 0, 9):
        paths = LabPaths(root=tmp_path / "lab", cache=LabPaths.default().cache, instance=n)
        if n != ours and not Path(f"/sys/class/net/{paths.bridge}").exists():
            return paths
    raise AssertionError("every lab instance 0-9 is in use on this machine")


def test_taken_frontend_port_is_named_and_nothing_is_left(tmp_path: Path) -> None:
    paths = _unused_instance(tmp_path)
    with socket.socket() as blocker:
        blocker.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        blocker.bind(("127.0.0.1", paths.frontend_base_port))
        blocker.listen()
        with pytest.raises(LabError) as err:
            Lab(paths).up(LabShape(("web",), 1))
    assert str(paths.frontend_base_port) in str(err.value)
    assert "fix:" in str(err.value)
    assert not (tmp_path / "lab" / "hosts").exists()
    assert not Path(f"/sys/class/net/{paths.bridge}").exists()


def test_not_root_gets_the_fix(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    paths = LabPaths(root=tmp_path / "lab", cache=tmp_path / "cache", instance=8)
    with pytest.raises(LabError) as err:
        Lab(paths).up()
    assert "needs root" in str(err.value) and "sudo" in str(err.value)
    assert not (tmp_path / "lab").exists()


def test_bad_shape_is_bad_input() -> None:
    proc = subprocess.run([sys.executable, "-m", "orchestrator", "lab", "up", "--services",
                           "web;rm -rf /"], capture_output=True, text=True, check=False,
                          env={**os.environ, "BLUEGREEN_LAB_INSTANCE": "8"})
    assert proc.returncode == 2
    assert "invalid lab service name" in proc.stderr
