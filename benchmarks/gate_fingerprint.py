"""The gate's time with and without the security fingerprint, on the lab, in one run.

Variants, run interleaved (round-robin) so that they share the machine's load:
  security   the default: drift + the security fingerprint, read before the checks and
             suites (both sides) and after them (the side), one command per host each time
  no-security  `drift.security: false`: the same reads without the security sections
  drift-off  `drift: {mode: off, security: false}`: only the side's before/after reads
Plus the fingerprint command alone on one host (with and without the security sections).

Usage (lab up first: `BLUEGREEN_LAB_INSTANCE=1 bluegreen lab up`):

    BLUEGREEN_LAB_INSTANCE=1 .venv/bin/python benchmarks/gate_fingerprint.py [--repeat 5]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml

from orchestrator.config.loaded import load_config
from orchestrator.inventory import load_fleet
from orchestrator.lab.paths import LabPaths
from orchestrator.probes.drift import read_fingerprints
from orchestrator.probes.gate import targets_for
from orchestrator.rollout.steps.verify import run_gate

VARIANTS: dict[str, dict[str, Any]] = {
    "security": {"mode": "fail", "security": True},
    "no-security": {"mode": "fail", "security": False},
    "drift-off": {"mode": "off", "security": False},
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--service", default="web")
    parser.add_argument("--side", default="green")
    args = parser.parse_args()
    lab_config = LabPaths.default().config
    doc = yaml.safe_load(lab_config.read_text())
    gate: dict[str, list[float]] = {name: [] for name in VARIANTS}
    command: dict[str, list[float]] = {"with security": [], "without": []}
    with tempfile.TemporaryDirectory(prefix="bg-gate-bench-") as tmp:
        configs = {}
        for name, drift in VARIANTS.items():
            variant = json.loads(json.dumps(doc))
            variant["services"][args.service]["drift"] = {
                **variant["services"][args.service].get("drift", {}), **drift}
            variant["services"][args.service]["fixed_versions"] = {}
            path = Path(tmp) / f"{name}.yml"
            path.write_text(yaml.safe_dump(variant))
            configs[name] = load_config(path)
        base = configs["security"]
        target = targets_for(base, load_fleet(base).service(args.service).side(args.side))[:1]
        for _ in range(args.repeat):
            for name, config in configs.items():
                t0 = time.perf_counter()
                report, _drift, _warnings = run_gate(config, args.service, args.side)
                gate[name].append(time.perf_counter() - t0)
                if not report.ok:
                    raise SystemExit(f"{name}: the gate failed: {report.failures[:3]}")
            for label, security in (("with security", True), ("without", False)):
                t0 = time.perf_counter()
                fps, errors = read_fingerprints(target, base.service(args.service).drift.files,
                                                security=security)
                command[label].append(time.perf_counter() - t0)
                if errors:
                    raise SystemExit(f"fingerprint: {errors}")
    med = {name: statistics.median(v) for name, v in gate.items()}
    out = {
        "hosts_in_gate": len(load_fleet(base).service(args.service).side(args.side)),
        "repeat": args.repeat,
        "load_average": os.getloadavg(),
        "gate_median_s": {k: round(v, 3) for k, v in med.items()},
        "security_vs_no_security": round(med["security"] / med["no-security"], 3),
        "security_vs_drift_off": round(med["security"] / med["drift-off"], 3),
        "fingerprint_command_median_s (one host, own connection)": {
            k: round(statistics.median(v), 3) for k, v in command.items()},
    }
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
