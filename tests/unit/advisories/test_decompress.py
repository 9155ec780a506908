"""Compression bombs within the download limits: one clear error ("decompresses past N MB")
and a process that stays small. Each attack runs in a child process whose peak RSS
(`resource.getrusage`) is measured: before the caps, the 64 KiB feed took 1.7 GiB and the
1 KiB .deb 2.2 GiB (issue 21, item 4)."""

from __future__ import annotations

import gzip
import json
import subprocess
import sys
import zlib
from pathlib import Path

import pytest

from orchestrator.advisories.changelog import read_changelog
from orchestrator.advisories.decompress import FLOOR, RATIO, decompressed_cap
from orchestrator.errors import BadInput
from tests.unit.advisories.feeds import DEB_CHANGELOG, OPENSSL_FIXED, build_deb

MAX_RSS_MB = 300


def gzip_of_repeats(unit: bytes, total: int, *, head: bytes = b"", tail: bytes = b"") -> bytes:
    """gzip of head + unit*N + tail (about `total` bytes), made without holding them."""
    comp = zlib.compressobj(9, zlib.DEFLATED, 31)
    out = [comp.compress(head)]
    block = unit * (1024 * 1024 // len(unit))
    for _ in range(total // len(block)):
        out.append(comp.compress(block))
    out += [comp.compress(tail), comp.flush()]
    return b"".join(out)



CHILD = """
import json, resource, sys
from pathlib import Path
from orchestrator.errors import BadInput
kind, location, cache = sys.argv[1:4]
try:
    if kind == "osv":
        from orchestrator.advisories.fetch import FetchPolicy
        from orchestrator.advisories.osv import OsvSource
        OsvSource(location, "Debian:12", FetchPolicy(cache_dir=Path(cache))).load()
    else:
        from orchestrator.advisories.changelog import read_changelog
        read_changelog(Path(location), sys.argv[4], location)
    error = None
except BadInput as exc:
    error = exc.message
print(json.dumps({"error": error, "maxrss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""


def run_child(*args: str) -> dict[str, object]:
    proc = subprocess.run([sys.executable, "-c", CHILD, *args], capture_output=True, text=True,
                          timeout=120, check=False)
    assert proc.returncode == 0 and "Traceback" not in proc.stderr, proc.stderr
    result: dict[str, object] = json.loads(proc.stdout)
    print(args[0], result)  # the figure, for the report (pytest -s)
    return result


def test_the_cap_follows_the_compressed_size() -> None:
    assert decompressed_cap(64 * 1024, 512 << 20) == FLOOR
    assert decompressed_cap(1 << 20, 512 << 20) == RATIO * (1 << 20)
    assert decompressed_cap(100 << 20, 512 << 20) == 512 << 20  # never past max_mb


def test_a_64_kib_gzip_bomb_feed_from_a_mirror(mirror: tuple[str, Path], tmp_path: Path) -> None:
    url, www = mirror
    bomb = gzip_of_repeats(b"{},", 66 << 20, head=b"[", tail=b"{}]")
    assert len(bomb) <= 70 * 1024, len(bomb)  # 64 KiB (+ a little) on the wire
    (www / "all.json.gz").write_bytes(bomb)
    got = run_child("osv", f"{url}/all.json.gz", str(tmp_path / "cache"))
    assert got["error"] is not None and "all.json.gz" in str(got["error"])
    assert f"decompresses past {FLOOR >> 20} MB" in str(got["error"])
    assert float(got["maxrss_mb"]) < MAX_RSS_MB  # type: ignore[arg-type]


def _deb_with_changelog(tmp_path: Path, compressed_changelog: bytes, *, zstd: bool) -> Path:
    deb = build_deb(tmp_path, "openssl", OPENSSL_FIXED, "openssl", DEB_CHANGELOG)
    root = tmp_path / f"build-openssl-{OPENSSL_FIXED}"
    (root / "usr/share/doc/openssl/changelog.Debian.gz").write_bytes(compressed_changelog)
    subprocess.run(["dpkg-deb", "--root-owner-group", "-Zzstd" if zstd else "-Zxz", "--build",
                    str(root), str(deb)], check=True, capture_output=True)
    return deb


@pytest.mark.parametrize("zstd", [False, True], ids=["data.tar.xz", "data.tar.zst"])
def test_a_tiny_deb_whose_changelog_expands_to_128_mib(tmp_path: Path, zstd: bool) -> None:
    header = DEB_CHANGELOG.split("\n\n", 1)[0].encode() + b"\n\n"
    bomb = gzip_of_repeats(b"  * CVE-2026-84782 again and again\n", 128 << 20, head=header)
    deb = _deb_with_changelog(tmp_path, bomb, zstd=zstd)
    assert deb.stat().st_size < 16 * 1024, deb.stat().st_size  # the .deb is a few KB
    got = run_child("deb", str(deb), str(tmp_path / "cache"), "openssl")
    assert got["error"] is not None, got
    assert "changelog.Debian.gz: decompresses past 16 MB" in str(got["error"])
    assert deb.name in str(got["error"])
    assert float(got["maxrss_mb"]) < MAX_RSS_MB  # type: ignore[arg-type]


def test_a_zstd_deb_is_read(tmp_path: Path) -> None:
    deb = _deb_with_changelog(tmp_path, gzip.compress(DEB_CHANGELOG.encode()), zstd=True)
    entries = read_changelog(deb, "openssl", str(deb))
    assert entries is not None and entries[0]["version"] == OPENSSL_FIXED
    assert entries[0]["cves"] == ["CVE-2026-35189", "CVE-2026-84782"]


def test_a_data_tar_past_the_whole_cap(tmp_path: Path) -> None:
    deb = build_deb(tmp_path, "libfoo1", "1.0-1", "foo", None)
    root = tmp_path / "build-libfoo1-1.0-1"
    (root / "usr/share/big").write_bytes(b"\0" * (3 << 20))
    subprocess.run(["dpkg-deb", "--root-owner-group", "-Zxz", "--build", str(root), str(deb)],
                   check=True, capture_output=True)
    with pytest.raises(BadInput, match=r"data.tar.xz: decompresses past 1 MB"):
        read_changelog(deb, "libfoo1", deb.name, max_bytes=1 << 20)
    assert read_changelog(deb, "libfoo1", deb.name) is None  # no changelog: None, as before


def test_a_symlinked_changelog_is_followed(tmp_path: Path) -> None:
    deb = build_deb(tmp_path, "libssl3", OPENSSL_FIXED, "openssl", None)
    root = tmp_path / f"build-libssl3-{OPENSSL_FIXED}"
    (root / "usr/share/doc/openssl").mkdir(parents=True)
    (root / "usr/share/doc/openssl/changelog.Debian.gz").write_bytes(
        gzip.compress(DEB_CHANGELOG.encode()))
    (root / "usr/share/doc/libssl3").rmdir()
    (root / "usr/share/doc/libssl3").symlink_to("openssl")
    subprocess.run(["dpkg-deb", "--root-owner-group", "-Zxz", "--build", str(root), str(deb)],
                   check=True, capture_output=True)
    entries = read_changelog(deb, "libssl3", deb.name)
    assert entries is not None and entries[0]["version"] == OPENSSL_FIXED
