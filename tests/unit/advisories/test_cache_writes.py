"""The advisories cache writes its small files through safe_write (issue 21, item 13): no
predictable temporary name (`.NAME.PID` was), no write through a planted symlink."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from orchestrator.advisories import fetch, tracker
from orchestrator.safe_write import UnsafePath


def test_meta_and_index_ignore_a_planted_temp_name_and_refuse_a_linked_target(
    tmp_path: Path,
) -> None:
    victim = tmp_path / "victim"
    victim.write_text("precious\n")
    meta = tmp_path / "feed.meta.json"
    index = tmp_path / "tracker.index.json"
    for path in (meta, index):  # what the old code wrote to: .NAME.PID, followed
        (tmp_path / f".{path.name}.{os.getpid()}").symlink_to(victim)
    fetch._write_meta(meta, {"etag": "x"})
    tracker._write_index(index, tracker._Parsed([], ["n"]))
    assert victim.read_text() == "precious\n"
    assert json.loads(meta.read_text()) == {"etag": "x"}
    assert json.loads(index.read_text())["notes"] == ["n"]
    assert oct(meta.stat().st_mode & 0o777) == "0o600"
    meta.unlink()
    meta.symlink_to(victim)
    with pytest.raises(UnsafePath):
        fetch._write_meta(meta, {"etag": "y"})
    assert victim.read_text() == "precious\n"
