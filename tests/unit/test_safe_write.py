"""Safe file writes: atomic, private, and never through a planted symlink."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from orchestrator import safe_write
from orchestrator.safe_write import UnsafePath, write_file


def tree(root: Path) -> dict[str, tuple[int, bytes | str]]:
    """Every entry under `root`: mode and content (or link target)."""
    out: dict[str, tuple[int, bytes | str]] = {}
    for p in sorted(root.rglob("*")):
        st = p.lstat()
        out[str(p.relative_to(root))] = (
            st.st_mode, os.readlink(p) if p.is_symlink() else p.read_bytes() if p.is_file() else b""
        )
    return out


def test_writes_atomically_with_the_mode_whatever_the_umask(tmp_path: Path) -> None:
    target = tmp_path / "report.md"
    old = os.umask(0)
    try:
        write_file(target, "first")
        write_file(target, "second é")
    finally:
        os.umask(old)
    assert target.read_text() == "second é"
    assert stat.S_IMODE(target.stat().st_mode) == 0o600
    write_file(target, b"unit", mode=0o644)
    assert stat.S_IMODE(target.stat().st_mode) == 0o644
    assert sorted(p.name for p in tmp_path.iterdir()) == ["report.md"]  # no temp left


def test_make_parents(tmp_path: Path) -> None:
    target = tmp_path / "a" / "b" / "out.json"
    write_file(target, "{}", make_parents=True)
    assert target.read_text() == "{}"
    assert stat.S_IMODE(target.parent.stat().st_mode) == 0o700


def test_symlink_at_the_target_is_refused_and_nothing_outside_changes(tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    victim = outside / "passwd"
    victim.write_text("root:x:0:0\n")
    victim.chmod(0o644)
    reports = tmp_path / "reports"
    reports.mkdir()
    (reports / "r.md").symlink_to(victim)
    before = tree(tmp_path)
    with pytest.raises(UnsafePath, match="symbolic link") as err:
        write_file(reports / "r.md", "evidence")
    assert err.value.exit_code == 2 and err.value.hint
    assert tree(tmp_path) == before


def test_dangling_symlink_at_the_target_is_refused(tmp_path: Path) -> None:
    (tmp_path / "r.md").symlink_to(tmp_path / "elsewhere" / "new-file")
    with pytest.raises(UnsafePath):
        write_file(tmp_path / "r.md", "evidence")
    assert not (tmp_path / "elsewhere").exists()


def test_symlink_planted_at_the_temporary_name_is_never_opened(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    victim = outside / "authorized_keys"
    victim.write_text("ssh-ed25519 AAAA... admin\n")
    reports = tmp_path / "reports"
    reports.mkdir()
    # the old, predictable temporary name, and the name the next write will pick
    (reports / f".r.md.{os.getpid()}.tmp").symlink_to(victim)
    monkeypatch.setattr(safe_write, "temp_name", lambda name: f".{name}.planted.tmp")
    (reports / ".r.md.planted.tmp").symlink_to(victim)
    before = tree(tmp_path)
    with pytest.raises(UnsafePath, match="temporary file"):
        write_file(reports / "r.md", "evidence")
    assert tree(tmp_path) == before
    monkeypatch.undo()
    write_file(reports / "r.md", "evidence")  # a fresh random name: fine, links untouched
    assert (reports / "r.md").read_text() == "evidence" and not (reports / "r.md").is_symlink()
    assert victim.read_text() == "ssh-ed25519 AAAA... admin\n"


def test_directory_at_the_target_is_refused(tmp_path: Path) -> None:
    (tmp_path / "r.md").mkdir()
    with pytest.raises(UnsafePath, match="not a regular file"):
        write_file(tmp_path / "r.md", "x")
