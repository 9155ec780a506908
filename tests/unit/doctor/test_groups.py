"""`status` (text and --json) and `side_group_problems` name a side whose inventory group is
missing (with the group it probably meant) or has no hosts (issue 22, item 6)."""

from __future__ import annotations

import json
from pathlib import Path

import yaml
from click.testing import CliRunner

from orchestrator.cli import main
from orchestrator.doctor.groups import side_group_problems
from orchestrator.testing import fake_config

SCRIPT = """#!/bin/sh
case "$1" in
  counters) echo '{"responses": 0, "errors_5xx": 0}' ;;
  *) echo '{"live": "blue"}' ;;
esac
"""


def config_with(tmp_path: Path, inventory: str) -> Path:
    config = fake_config(tmp_path)
    script = tmp_path / "lb.sh"
    script.write_text(SCRIPT)
    script.chmod(0o755)
    doc = yaml.safe_load(config.path.read_text())
    doc["router"]["script"] = str(script)
    config.path.write_text(yaml.safe_dump(doc))
    (tmp_path / "hosts.yml").write_text(inventory)
    return config.path


def test_status_names_a_missing_or_empty_side_group(tmp_path: Path) -> None:
    path = config_with(tmp_path, "all:\n  children:\n    web_blue: {hosts: {b1: {}}}\n"
                                 "    web_gren: {hosts: {g1: {}}}\n")
    out = CliRunner().invoke(main, ["-c", str(path), "status", "web", "--json"])
    assert out.exit_code == 0, out.output
    doc = json.loads(out.output)
    assert set(doc["inventory"]) == {"green"}
    assert "'web_green' (services.web.sides.green) is not in" in doc["inventory"]["green"]
    assert "did you mean 'web_gren'?" in doc["inventory"]["green"]
    text = CliRunner().invoke(main, ["-c", str(path), "status"])
    assert text.exit_code == 0, text.output
    assert "INVENTORY (green): inventory group 'web_green'" in text.output
    doctor = CliRunner().invoke(main, ["-c", str(path), "doctor", "web"])
    assert doctor.exit_code == 2, doctor.output  # refused, naming the group and a fix
    assert "'web_green'" in doctor.output and "did you mean 'web_gren'?" in doctor.output

    (tmp_path / "hosts.yml").write_text("all:\n  children:\n    web_blue: {hosts: {b1: {}}}\n"
                                        "    web_green: {}\n")
    problems = CliRunner().invoke(main, ["-c", str(path), "status", "--json"])
    assert json.loads(problems.output)[0]["inventory"] == {
        "green": f"inventory group 'web_green' (services.web.sides.green) has no hosts in "
                 f"{tmp_path / 'hosts.yml'}"}


def test_a_good_inventory_has_no_problem_and_a_broken_one_names_its_error(
        tmp_path: Path) -> None:
    path = config_with(tmp_path, "all:\n  children:\n    web_blue: {hosts: {b1: {}}}\n"
                                 "    web_green: {hosts: {g1: {}}}\n")
    from orchestrator.config.loaded import load_config

    assert side_group_problems(load_config(path), ["web"]) == {}
    (tmp_path / "hosts.yml").unlink()
    problems = side_group_problems(load_config(path), ["web"])
    assert set(problems["web"]) == {"blue", "green"}
    assert "inventory not found" in problems["web"]["blue"]
