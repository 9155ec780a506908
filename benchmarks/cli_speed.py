"""Whole-process timings of the fast paths: `bluegreen --help` and `bluegreen rollback`.

Usage (lab up, as root):  .venv/bin/python benchmarks/cli_speed.py [--runs 15]

Prints the median and p90 of each command over N runs, next to the floor measured in the
same run: the same interpreter starting and importing click (`python -c "import click"`),
and one HAProxy map change over the admin socket. Rollbacks alternate directions on the
lab's `api` service (both sides untouched by patches, so both are trusted).

"rollback" is the normal incident case: some earlier command (here a `status`) validated
bluegreen.yml in full and left its snapshot (orchestrator/config/snapshot.py). "rollback,
no snapshot" gives every run an empty cache directory: the full YAML + pydantic load.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from orchestrator.lab.paths import LabPaths

LAB_CONFIG = LabPaths.default().config  # this lab instance's (BLUEGREEN_LAB_INSTANCE)


def timed(argv: list[str], env: dict[str, str] | None = None) -> float:
    started = time.perf_counter()
    proc = subprocess.run(argv, capture_output=True, text=True, check=False, env=env)
    elapsed = time.perf_counter() - started
    if proc.returncode != 0:
        raise SystemExit(f"failed: {' '.join(argv)}: {proc.stderr.strip()}")
    return elapsed


def stats(samples: list[float]) -> str:
    s = sorted(samples)
    p90 = s[min(len(s) - 1, int(len(s) * 0.9))]
    return f"median {statistics.median(s) * 1000:7.1f} ms   p90 {p90 * 1000:7.1f} ms"


def socket_flip_ms(sock_path: str, map_file: str, runs: int) -> float:
    samples = []
    for i in range(runs):
        backend = "api_green" if i % 2 == 0 else "api_blue"
        started = time.perf_counter()
        with socket.socket(socket.AF_UNIX) as s:
            s.connect(sock_path)
            s.sendall(f"set map {map_file} api {backend}\n".encode())
            while s.recv(4096):
                pass
        samples.append(time.perf_counter() - started)
    with socket.socket(socket.AF_UNIX) as s:  # leave api on blue
        s.connect(sock_path)
        s.sendall(f"set map {map_file} api api_blue\n".encode())
        while s.recv(4096):
            pass
    return statistics.median(samples) * 1000


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=15)
    ap.add_argument("--config", type=Path, default=LAB_CONFIG)
    args = ap.parse_args()
    py = sys.executable
    bg = [py, "-m", "orchestrator"]
    floor = [timed([py, "-c", "import click"]) for _ in range(args.runs)]
    helps = [timed([*bg, "--help"]) for _ in range(args.runs)]
    subprocess.run([*bg, "-c", str(args.config), "status", "api"], check=True,
                   capture_output=True)  # a full load leaves the snapshot
    def away(i: int) -> None:
        """Untimed: traffic to the other side, so that the timed rollback really flips
        back (a rollback with nothing to roll back to changes nothing)."""
        live = json.loads(subprocess.run(
            [*bg, "-c", str(args.config), "status", "api", "--json"],
            capture_output=True, text=True, check=True).stdout)["live"]
        subprocess.run([*bg, "-c", str(args.config), "flip", "api", "--to",
                        "green" if live == "blue" else "blue", "--force", "--reason",
                        f"benchmark setup {i}"], check=True, capture_output=True)

    rollbacks = []
    for i in range(args.runs):
        away(i)
        rollbacks.append(timed([*bg, "-c", str(args.config), "rollback", "api",
                                "--reason", f"benchmark {i}"]))
    cold = []
    for i in range(args.runs):
        away(i)
        with tempfile.TemporaryDirectory() as cache:
            env = {**os.environ, "BLUEGREEN_CACHE_DIR": cache}
            cold.append(timed([*bg, "-c", str(args.config), "rollback", "api",
                               "--reason", f"benchmark, no snapshot {i}"], env))
    live = json.loads(subprocess.run([*bg, "-c", str(args.config), "status", "api", "--json"],
                                     capture_output=True, text=True, check=True).stdout)["live"]
    if live != "blue":
        subprocess.run([*bg, "-c", str(args.config), "flip", "api", "--to", "blue", "--force",
                        "--reason", "benchmark: back to blue"], check=True, capture_output=True)
    cfg = __import__("yaml").safe_load(args.config.read_text())
    sock = cfg["router"]["socket"].removeprefix("unix://")
    flip_ms = socket_flip_ms(sock, cfg["router"]["map_file"], args.runs)
    print(f"runs per command: {args.runs}")
    print(f"floor: python + import click       {stats(floor)}")
    print(f"floor: one HAProxy map change        median {flip_ms:7.3f} ms")
    print(f"bluegreen --help                     {stats(helps)}   "
          f"(x{statistics.median(helps) / statistics.median(floor):.2f} of the floor)")
    print(f"bluegreen rollback api (whole proc)  {stats(rollbacks)}   "
          f"(x{statistics.median(rollbacks) / statistics.median(floor):.2f} of the floor)")
    print(f"bluegreen rollback, no snapshot      {stats(cold)}   "
          f"(x{statistics.median(cold) / statistics.median(floor):.2f} of the floor)")
    print("targets: --help <= 150 ms, rollback <= 300 ms (median)")


if __name__ == "__main__":
    main()
