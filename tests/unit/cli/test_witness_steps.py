"""Long-running commands publish the audit head to the witnesses after every round or step
that appended records, not only when they exit (issue 20, item 16): `watch` (text and
JSON) and `campaign run` (also while it waits for its window). Real CLI (in process), real
SQLite store, a file witness; the rounds and the campaign engine are stand-ins."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from orchestrator.cli.app import main
from orchestrator.errors import StateError
from orchestrator.probes.drift import Difference, DriftReport
from orchestrator.state import AuditEntryInput, SQLiteStateStore
from orchestrator.testing import fake_config


def config_with_witness(tmp_path: Path) -> tuple[Path, Path]:
    fake_config(tmp_path)
    path, witness = tmp_path / "bluegreen.yml", tmp_path / "witness.log"
    doc = json.loads(path.read_text())
    doc["audit"] = {"witness": {"syslog": "off", "file": str(witness)}}
    path.write_text(json.dumps(doc))
    return path, witness


def witnessed_seqs(witness: Path) -> list[int]:
    if not witness.exists():
        return []
    return [int(line.split("seq=")[1].split()[0]) for line in witness.read_text().splitlines()]


def append_deviation(tmp_path: Path) -> int:
    with SQLiteStateStore(tmp_path / "state" / "state.db") as store:
        return store.audit_append(AuditEntryInput(
            actor="watch", command="deviation", service="web", result="deviation")).seq


@pytest.mark.parametrize("as_json", [False, True])
def test_a_watch_publishes_the_head_of_its_deviation_before_its_next_round(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, as_json: bool
) -> None:
    from orchestrator.baseline import watch as watch_module

    cfg, witness = config_with_witness(tmp_path)
    seen: dict[str, Any] = {}

    def check_round(config: Any, service: str, **_kw: Any) -> Any:
        if "seq" not in seen:  # round 1: a deviation, recorded
            seen["seq"] = append_deviation(tmp_path)
            report = DriftReport(("web-blue-1",), [Difference(
                "web-blue-1", "cron", "/etc/cron.d/x", None, "root", "baseline")], {})
            return watch_module.WatchRound(service, "blue", tmp_path / "b.json", report,
                                           datetime.now(UTC), {"web-blue-1": ["cron"]},
                                           seen["seq"])
        seen["witnessed"] = witnessed_seqs(witness)  # round 2: the command still runs
        raise StateError("stop the watch here")

    monkeypatch.setattr(watch_module, "check_round", check_round)
    args = ["-c", str(cfg), "watch", "web", "--interval", "1"] + (["--json"] if as_json else [])
    result = CliRunner().invoke(main, args)
    assert "stop the watch here" in result.output, result.output
    assert seen["witnessed"] and seen["witnessed"][-1] >= seen["seq"], seen


def test_a_campaign_publishes_the_head_after_each_step(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from orchestrator.campaign import runner as runner_module
    from orchestrator.campaign.events import CampaignEvent

    cfg, witness = config_with_witness(tmp_path)
    camp = tmp_path / "c.yml"  # read by the stand-in loader below: never parsed
    seen: dict[str, Any] = {}

    class Engine:
        """Stands in for CampaignRunner: one step that appends a record and says so,
        then waits for its window (what the witness file holds meanwhile is kept)."""

        def __init__(self, config: Any, store: Any, router: Any, *, on_event: Any,
                     **_kw: Any) -> None:
            self.store, self.on_event = store, on_event

        def run(self, *_a: Any, **_kw: Any) -> Any:
            seen["seq"] = self.store.audit_append(AuditEntryInput(
                actor="ci", command="campaign.step", service="web")).seq
            self.on_event(CampaignEvent("info", "window closed; waiting", {}))
            seen["witnessed"] = witnessed_seqs(witness)
            raise StateError("stop the campaign here")

    monkeypatch.setattr(runner_module, "CampaignRunner", Engine)
    monkeypatch.setattr("orchestrator.campaign.model.load_campaign",
                        lambda _file: type("Campaign", (), {"name": "c"})())
    result = CliRunner().invoke(main, ["-c", str(cfg), "campaign", "run", str(camp),
                                       "--wait-for-window", "--yes"])
    assert "witnessed" in seen, result.output
    assert seen["witnessed"] and seen["witnessed"][-1] >= seen["seq"], seen
