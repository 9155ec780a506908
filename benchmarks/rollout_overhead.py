"""bluegreen's overhead over doing the same rollout by hand, on the lab (2 services x 2 x 2).

Usage (as root; starts the lab if needed):
    .venv/bin/python benchmarks/rollout_overhead.py [--runs 3]

Per run, on fresh `web` hosts (lab reset) and with bake set to 0 s in a config copy (baking
is a deliberate wait, the same for both):
  by hand:   ansible-playbook playbooks/patch.yml on web_green (same packages, same serial)
             + the same gate probes (run_checks) + the same HAProxy `set map` over the socket
             + writing the map file
  bluegreen: `bluegreen rollout web --yes` (lock, precheck, journal, audit, patch, verify,
             flip with read-back and confirmation request, state)
Prints the median of each and the ratio (target <= 1.15).
"""

from __future__ import annotations

import argparse
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

from orchestrator.config.loaded import load_config, parse_package_arg
from orchestrator.inventory import load_fleet
from orchestrator.lab.lab import Lab
from orchestrator.probes.engine import run_checks
from orchestrator.probes.gate import gate_checks, targets_for


def by_hand(lab: Lab, cfg_path: Path) -> float:
    config = load_config(cfg_path)
    svc = config.service("web")
    packages = [str(p) for p in svc.patch.packages]
    env = {**os.environ, "ANSIBLE_HOST_KEY_CHECKING": "True",
           "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"}
    started = time.perf_counter()
    subprocess.run(
        ["ansible-playbook", "-i", str(config.inventory_path), "playbooks/patch.yml",
         "-e", "target=web_green", "-e", f"patch_serial={svc.patch.serial}",
         "-e", yaml.safe_dump({"packages": packages}, default_flow_style=True).strip()],
        check=True, capture_output=True, env=env)
    hosts = load_fleet(config).service("web").green
    report = run_checks(targets_for(config, hosts),
                        gate_checks(config, "web", [parse_package_arg(p) for p in packages]), 120)
    assert report.ok, report.failures
    with socket.socket(socket.AF_UNIX) as s:
        s.connect(str(lab.paths.haproxy_socket))
        s.sendall(f"set map {lab.paths.map_file} web web_green\n".encode())
        while s.recv(4096):
            pass
    lab.paths.map_file.write_text("web web_green\napi api_blue\n")
    return time.perf_counter() - started


def with_bluegreen(cfg_path: Path) -> float:
    started = time.perf_counter()
    subprocess.run([sys.executable, "-m", "orchestrator", "-c", str(cfg_path), "rollout", "web",
                    "--yes", "--json"], check=True, capture_output=True)
    return time.perf_counter() - started


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=3)
    args = ap.parse_args()
    lab = Lab()
    lab.up()
    tmp = Path(tempfile.mkdtemp(prefix="bg-bench-"))
    doc = yaml.safe_load(lab.paths.config.read_text())
    doc["state"]["path"] = str(tmp / "state.db")
    for svc in doc["services"].values():  # bluegreen's own overhead: no bake, no steps
        svc["bake"]["seconds"] = 0
        svc["bake"].pop("steps", None)
        svc["bake"].pop("analysis", None)
    cfg = tmp / "bluegreen.yml"
    cfg.write_text(yaml.safe_dump(doc))
    web_hosts = [h["name"] for h in lab.status()["hosts"] if h["service"] == "web"]
    hand, tool = [], []
    try:
        for _ in range(args.runs):
            lab.reset(web_hosts)
            hand.append(by_hand(lab, cfg))
            lab.reset(web_hosts)
            (tmp / "state.db").unlink(missing_ok=True)
            tool.append(with_bluegreen(cfg))
    finally:
        lab.reset(web_hosts)
        shutil.rmtree(tmp, ignore_errors=True)
    h, t = statistics.median(hand), statistics.median(tool)
    print(f"runs: {args.runs}")
    print(f"by hand (ansible-playbook + probes + socket): median {h:6.2f} s  {sorted(round(x, 2) for x in hand)}")
    print(f"bluegreen rollout web (bake 0 s):            median {t:6.2f} s  {sorted(round(x, 2) for x in tool)}")
    print(f"overhead ratio: {t / h:.2f} (target <= 1.15)")


if __name__ == "__main__":
    main()
