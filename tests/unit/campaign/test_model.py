"""Campaign files: validation with clear errors, package resolution, the shipped examples."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from orchestrator.campaign.model import campaign_from_dict, load_campaign, packages_for
from orchestrator.config.types import parse_duration
from orchestrator.errors import BadInput

ROOT = Path(__file__).resolve().parents[3]


def minimal(**over: Any) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "name": "c1",
        "advisories": [
            {"id": "DEMO-1", "cves": ["CVE-2026-0001"], "packages": {"demo-openssl": "3.0.15-1"}}
        ],
        "waves": [{"services": ["web"]}],
    }
    doc.update(over)
    return doc


def test_minimal_defaults() -> None:
    c = campaign_from_dict(minimal())
    assert c.window.always and c.approval.mode == "auto"
    assert c.waves[0].on_failure == "stop" and c.waves[0].max_parallel == 1
    assert [str(p) for p in packages_for(c, "web")] == ["demo-openssl=3.0.15-1"]
    assert c.workers.on_no_worker == "defer" and c.workers.no_worker_deadline.seconds == 600
    assert c.workers.budget.max_failed_services is None


def test_unknown_field_names_file_field_and_fix() -> None:
    doc = minimal(waves=[{"services": ["web"], "on_failur": "stop"}])
    with pytest.raises(BadInput) as exc:
        campaign_from_dict(doc, "camp.yml")
    assert "camp.yml: waves[0].on_failur: unknown field" in exc.value.message
    assert "on_failure" in (exc.value.hint or "")


@pytest.mark.parametrize(
    ("over", "needle"),
    [
        ({"advisories": [{"id": "A", "cves": ["CVE-26-1"], "packages": {"x": "1"}}]}, "CVE"),
        ({"advisories": [{"id": "A", "packages": {}}]}, "must not be empty"),
        ({"advisories": [{"id": "A", "packages": {"x": "1; rm"}}]}, "invalid package version"),
        ({"window": {"start": "0 22 * * 6"}}, "start:` and `duration:` go together"),
        ({"window": {"start": "0 25 * * *", "duration": "2h"}}, "hour"),
        ({"window": {"always": True, "timezone": "Mars/Base"}}, "unknown timezone"),
        (
            {"window": {"intervals": [{"start": "2026-01-01T10:00", "end": "2026-01-01T11:00"}]}},
            "timezone",
        ),
        ({"approval": {"mode": "sometimes"}}, "approval.mode"),
        ({"waves": [{"services": ["web"], "on_failure": "retry"}]}, "on_failure"),
        ({"retention": {"keep": "soon"}}, "duration"),
        ({"workers": {"on_no_worker": "wait"}}, "workers.on_no_worker: must be 'defer' or"),
        ({"workers": {"budget": {"max_failed_hosts_percent": 101}}},
         "workers.budget.max_failed_hosts_percent: input should be less than or equal to 100"),
        ({"workers": {"budget": {"max_failed_service": 1}}}, "did you mean 'max_failed_services'"),
    ],
)
def test_bad_values_are_one_clear_error(over: dict[str, Any], needle: str) -> None:
    with pytest.raises(BadInput) as exc:
        campaign_from_dict(minimal(**over), "c.yml")
    assert needle.lower() in str(exc.value).lower()
    assert str(exc.value).startswith("c.yml")


def test_durations() -> None:
    assert parse_duration("1h30m") == timedelta(minutes=90)
    assert parse_duration(0) == timedelta(0)
    assert parse_duration("0s") == timedelta(0)
    assert parse_duration("P7D") == timedelta(days=7)
    with pytest.raises(ValueError):
        parse_duration("-5")


def test_advisory_applies_to_restricts_packages() -> None:
    c = campaign_from_dict(
        minimal(
            advisories=[
                {"id": "A", "packages": {"demo-openssl": "3.0.15-1"}},
                {"id": "B", "packages": {"demo-web": "1.1.0"}, "applies_to": ["api"]},
            ]
        )
    )
    assert [str(p) for p in packages_for(c, "web")] == ["demo-openssl=3.0.15-1"]
    assert [str(p) for p in packages_for(c, "api")] == ["demo-openssl=3.0.15-1", "demo-web=1.1.0"]


def test_round_trip_through_json_dump() -> None:
    """Runs store the campaign as JSON and re-validate it on resume."""
    c = load_campaign(ROOT / "inventories/example/campaigns/2026-11-openssl.yml")
    again = campaign_from_dict(c.model_dump(mode="json"))
    assert again == c


def test_shipped_examples_are_valid(tmp_path: Path) -> None:
    demo = load_campaign(ROOT / "inventories/lab/campaigns/lab-demo.yml")
    assert demo.advisories[0].packages == {"demo-openssl": "3.0.15-1", "demo-web": "1.0.1"}
    assert [w.services for w in demo.waves] == [["web"], ["api"]]
    bad = tmp_path / "bad.yml"
    bad.write_text("name: x\nadvisories: [\n")
    with pytest.raises(BadInput) as exc:
        load_campaign(bad)
    assert str(bad) in exc.value.message and "YAML" in exc.value.message
    with pytest.raises(BadInput, match="not found"):
        load_campaign(tmp_path / "missing.yml")


def test_unknown_service_in_a_wave_names_the_campaign_field(tmp_path: Path) -> None:
    from orchestrator.campaign.waves import resolve_waves
    from orchestrator.config.loaded import load_config

    config = load_config(ROOT / "inventories/example/bluegreen.yml")
    known = sorted(config.services)
    campaign = campaign_from_dict(
        minimal(waves=[{"services": [known[0]]}, {"services": [known[0] + "x"]}])
    )
    with pytest.raises(BadInput) as exc:
        resolve_waves(campaign, config)
    assert "campaign waves[1].services" in exc.value.message
    assert f"{known[0]}x" in exc.value.message and f"did you mean {known[0]!r}" in exc.value.message
    assert exc.value.hint is not None and known[0] in exc.value.hint
