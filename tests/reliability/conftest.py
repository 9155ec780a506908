"""The reliability suite: every test is marked `reliability` (and `lab`), and the run ends
with a summary table of what was proven (kill points, faults, load, hostile corpus)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.reliability.helpers import FIGURES

HERE = Path(__file__).parent


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if HERE in Path(str(item.fspath)).parents:
            item.add_marker(pytest.mark.reliability)


def pytest_terminal_summary(terminalreporter: Any, exitstatus: int, config: pytest.Config) -> None:
    kills = FIGURES["kill_points"]
    faults = FIGURES["faults"]
    loads = FIGURES["load"]
    if not (kills or faults or loads or FIGURES["corpus"] or FIGURES["hostile_hosts_tried"]):
        return
    tr = terminalreporter
    tr.section("bluegreen reliability summary")
    survived = sum(1 for _label, ok in kills if ok)
    tr.write_line(f"{'kill points survived':<34} {survived}/{len(kills)}")
    if kills:
        tr.write_line(
            "  " + ", ".join(f"{label}{'' if ok else ' (FAILED)'}" for label, ok in kills)
        )
    tr.write_line(f"{'faults covered':<34} {sum(1 for f in faults if f[2] == 'ok')}/{len(faults)}")
    for name, code, outcome in faults:
        tr.write_line(f"  {name:<40} exit {code!s:<4} {outcome}")
    for load in loads:
        tr.write_line(
            f"{'load: ' + load['label']:<34} sent {load['sent']}, failed {load['failed']}, "
            f"p50 {load['p50_ms']:.1f} ms, p99 {load['p99_ms']:.1f} ms, "
            f"{load['flips']} flips in {load['seconds']:.1f} s"
        )
    tr.write_line(
        f"{'hostile input corpus':<34} {FIGURES['corpus_ok']}/{FIGURES['corpus']} cases rejected "
        "cleanly"
    )
    tr.write_line(
        f"{'  of them a database writer':<34} {FIGURES['db_writer_ok']}/{FIGURES['db_writer']} "
        "refused (audit downgrade, rows edited without the key)"
    )
    scenarios = FIGURES["hostile_hosts"]
    if FIGURES["hostile_hosts_tried"]:
        tr.write_line(f"{'a compromised fleet host':<34} {len(scenarios)}/"
                      f"{FIGURES['hostile_hosts_tried']} scenarios held")
        for scenario, _ok in scenarios:
            tr.write_line(f"  {scenario}")
