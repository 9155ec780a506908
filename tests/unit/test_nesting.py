"""The nesting-depth budget: deep JSON/YAML is one clear error naming the file (exit 2),
never a RecursionError traceback (exit 1), through the real CLI for bluegreen.yml and a
campaign file."""

from __future__ import annotations

from pathlib import Path

import pytest

from orchestrator.nesting import MAX_DEPTH, TooDeep, depth_over, loads_json
from tests.support.cli import bluegreen

EXAMPLE = Path(__file__).resolve().parents[2] / "inventories" / "example"


def test_depth_is_counted_without_recursion() -> None:
    doc: object = 1
    for _ in range(100_000):  # far deeper than Python's recursion limit
        doc = [doc]
    assert depth_over(doc, MAX_DEPTH)
    assert not depth_over({"a": [{"b": [1]}]}, 4)
    assert depth_over({"a": [{"b": [1]}]}, 3)


def test_deep_json_is_too_deep_not_a_recursion_error() -> None:
    with pytest.raises(TooDeep, match="nested deeper than 64 levels"):
        loads_json("[" * 100_000 + "]" * 100_000)
    with pytest.raises(TooDeep):
        loads_json("[" * 65 + "]" * 65)
    assert loads_json("[" * 64 + "]" * 64) is not None


def _one_error(proc_out: str, name: str) -> None:
    assert "Traceback" not in proc_out and "RecursionError" not in proc_out, proc_out
    errors = [line for line in proc_out.splitlines() if line.lower().startswith("error")]
    assert len(errors) == 1, proc_out
    assert name in errors[0] and "nested deeper than 64 levels" in errors[0], proc_out
    assert "fix:" in proc_out


@pytest.mark.parametrize("deep", ["[" * 5000 + "]" * 5000, "{a: " * 5000 + "1" + "}" * 5000,
                                  "".join(" " * i + "a:\n" for i in range(200)) + " " * 200 + "1"])
def test_deep_config_file_through_the_cli(tmp_path: Path, deep: str) -> None:
    cfg = tmp_path / "bluegreen.yml"
    cfg.write_text((EXAMPLE / "bluegreen.yml").read_text() + f"\nx_deep: {deep}\n"
                   if deep.startswith(("[", "{")) else
                   (EXAMPLE / "bluegreen.yml").read_text() + "\nx_deep:\n" +
                   "".join("  " + line + "\n" for line in deep.splitlines()))
    proc = bluegreen(cfg, "status", timeout=60)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    _one_error(proc.stdout + proc.stderr, "bluegreen.yml")


def test_deep_campaign_file_through_the_cli(tmp_path: Path) -> None:
    campaign = tmp_path / "deep.yml"
    original = (EXAMPLE / "campaigns" / "2026-11-openssl.yml").read_text()
    campaign.write_text(original.replace(
        "description: OpenSSL advisory of November 2026, fleet-wide.",
        "description: " + "[" * 3000 + "]" * 3000))
    assert campaign.read_text() != original
    proc = bluegreen(EXAMPLE / "bluegreen.yml", "campaign", "plan", str(campaign), timeout=60)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    _one_error(proc.stdout + proc.stderr, "deep.yml")
