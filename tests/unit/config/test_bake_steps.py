"""bake.steps and bake.analysis in bluegreen.yml: valid forms load, every bad one is one
BadInput naming the field and the fix; the analysis gets the defaults with the overrides."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from orchestrator.analysis.queries import DEFAULT_METRICS, render
from orchestrator.analysis.settings import metric_specs, side_selector, volume_query
from orchestrator.config.bake import DEFAULT_METRIC_NAMES
from orchestrator.config.loaded import load_config
from tests.unit.config.test_loaded import bad, minimal, write

STEPS = [{"percent": 5, "seconds": 10}, {"percent": 25, "seconds": 10},
         {"percent": 100, "seconds": 4}]


def with_bake(bake: dict[str, Any]) -> dict[str, Any]:
    doc = minimal()
    doc["services"]["web"]["bake"] = bake
    return doc


def test_without_steps_the_bake_is_todays(tmp_path: Path) -> None:
    bake = load_config(write(tmp_path, with_bake({"seconds": 7}))).service("web").bake
    assert bake.steps == [] and bake.exposure_steps == [] and bake.final_seconds == 7
    assert bake.analysis.source == "counters" and bake.analysis.on_inconclusive == "rollback"


def test_steps_and_analysis_load(tmp_path: Path) -> None:
    bake = load_config(write(tmp_path, with_bake({
        "steps": STEPS,
        "analysis": {"source": "http://127.0.0.1:9090", "min_volume": 30,
                     "metrics": {"error_ratio": {"floor": 0.02},
                                 "p99": {"query": "max(p99{{selector}}[{window}])",
                                         "floor": 0.2}},
                     "on_inconclusive": "pause", "inconclusive_seconds": 5},
    }))).service("web").bake
    assert [s.percent for s in bake.exposure_steps] == [5, 25]
    assert bake.final_seconds == 4  # the last step's hold is the final bake
    specs = {s.name: s for s in metric_specs(bake.analysis)}
    assert set(specs) == {"error_ratio", "latency_seconds", "p99"}
    assert specs["error_ratio"].floor == 0.02 and specs["error_ratio"].max_value == 0.05
    assert specs["latency_seconds"] == DEFAULT_METRICS[1]
    selector = side_selector(bake.analysis, "web_green")
    assert selector == 'proxy="web_green"'
    # a template is written as Prometheus reads it: its own braces are not doubled
    assert render(specs["p99"].query, selector, "10s") == 'max(p99{proxy="web_green"}[10s])'
    assert "web_green" in render(volume_query(bake.analysis), selector, "10s")


def test_counters_judge_the_error_ratio_and_the_latency(tmp_path: Path) -> None:
    bake = load_config(write(tmp_path, with_bake({"steps": STEPS}))).service("web").bake
    assert [s.name for s in metric_specs(bake.analysis)] == ["error_ratio", "latency_seconds"]
    assert set(DEFAULT_METRIC_NAMES) == {s.name for s in DEFAULT_METRICS}


@pytest.mark.parametrize(("bake", "words"), [
    ({"steps": [{"percent": 5, "seconds": 10}]}, "must be percent 100"),
    ({"steps": [{"percent": 25, "seconds": 10}, {"percent": 5, "seconds": 10},
                {"percent": 100, "seconds": 1}]}, "must increase"),
    ({"steps": [{"percent": 0, "seconds": 10}, {"percent": 100, "seconds": 1}]}, "percent"),
    ({"steps": [{"percent": 5, "seconds": 0}, {"percent": 100, "seconds": 1}]}, "at least 1 second"),
    ({"steps": [{"percent": 5, "seconds": 1, "weight": 3}]}, "weight"),
    ({"analysis": {"source": "prometheus.local:9090"}}, "Prometheus URL"),
    ({"analysis": {"source": "http://p:9090", "metrics": {"p99": {"floor": 1}}}},
     "p99 need a `query`"),
    ({"analysis": {"source": "http://p:9090",
                   "metrics": {"x": {"query": "sum(rate(x[{window}]))"}}}}, "{selector}"),
    ({"analysis": {"metrics": {"x": {"query": "x{{selector}}"}}}}, "need a Prometheus"),
    ({"analysis": {"selector": 'job="web"'}}, "{backend}"),
    ({"analysis": {"on_inconclusive": "promote"}}, "on_inconclusive"),
    ({"analysis": {"failure_limit": 0}}, "failure_limit"),
])
def test_bad_steps_and_analysis_name_the_field(tmp_path: Path, bake: dict[str, Any],
                                                words: str) -> None:
    message = bad(write(tmp_path, with_bake(bake)))
    assert words in message, message
    assert "bake" in message, message
