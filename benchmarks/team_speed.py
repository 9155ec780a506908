"""Team mode's cost: `bluegreen rollback` (whole process) with the SQLite store and with the
PostgreSQL store, interleaved in the same run; and audit appends per second with 4
concurrent writer processes on each backend.

Usage (lab up, local PostgreSQL up: `./bootstrap.sh postgres`, as root):
    .venv/bin/python benchmarks/team_speed.py [--runs 15] [--appends 200]

The PostgreSQL side runs in a throwaway database on the local server (unix socket), made
and dropped here. Rollbacks alternate directions on the lab's `api` service, after an
untimed `flip --force` each (as benchmarks/cli_speed.py), with the config snapshot present.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psycopg
import yaml

from orchestrator.lab.paths import LabPaths

ADMIN_URL = os.environ.get("BLUEGREEN_TEST_PG_ADMIN", "postgresql:///postgres")
BG = [sys.executable, "-m", "orchestrator"]


def run(config: Path, *args: str) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run([*BG, "-c", str(config), *args], capture_output=True, text=True,
                          check=False)
    if proc.returncode != 0:
        raise SystemExit(f"failed: bluegreen {' '.join(args)}: {proc.stderr.strip()}")
    return proc


def away(config: Path, i: int) -> None:
    live = json.loads(run(config, "status", "api", "--json").stdout)["live"]
    run(config, "flip", "api", "--to", "green" if live == "blue" else "blue", "--force",
        "--reason", f"benchmark setup {i}")


def timed_rollback(config: Path, i: int) -> float:
    away(config, i)
    started = time.perf_counter()
    run(config, "rollback", "api", "--reason", f"benchmark {i}")
    return time.perf_counter() - started


WRITER = """
import sys, time
from pathlib import Path
from orchestrator.state.models import AuditEntryInput
from orchestrator.state.registry import open_store, parse_state_url
store = open_store(parse_state_url(sys.argv[1]), audit_key_file=Path(sys.argv[2]))
sys.stdout.write("ready\\n"); sys.stdout.flush()
sys.stdin.readline()
for n in range(int(sys.argv[3])):
    store.audit_append(AuditEntryInput(actor="bench", command=f"append-{n}"))
store.close()
"""


def appends_per_second(url: str, key: Path, writers: int, each: int) -> float:
    """`writers` processes, each opened and ready, then all released at once."""
    procs = [subprocess.Popen([sys.executable, "-c", WRITER, url, str(key), str(each)],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
             for _ in range(writers)]
    for proc in procs:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
    started = time.perf_counter()
    for proc in procs:
        assert proc.stdin is not None
        proc.stdin.write("go\n")
        proc.stdin.flush()
    for proc in procs:
        proc.wait(600)
        if proc.returncode != 0:
            raise SystemExit("an audit writer failed")
    return writers * each / (time.perf_counter() - started)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=15)
    ap.add_argument("--appends", type=int, default=200, help="per writer")
    ap.add_argument("--writers", type=int, default=4)
    args = ap.parse_args()
    lab_config = LabPaths.default().config
    load_before = os.getloadavg()[0]
    name = f"bluegreen_bench_{os.getpid()}_{secrets.token_hex(3)}"
    with psycopg.connect(ADMIN_URL, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    url = ADMIN_URL.rsplit("/", 1)[0] + f"/{name}"
    try:
        with tempfile.TemporaryDirectory() as tmp:
            doc = yaml.safe_load(lab_config.read_text())
            doc["state"] = {"url": url}
            pg_config = Path(tmp) / "bluegreen.yml"
            pg_config.write_text(yaml.safe_dump(doc))
            run(pg_config, "state", "migrate")
            run(lab_config, "status", "api")  # leaves the snapshots
            run(pg_config, "status", "api")
            lite, pg = [], []
            for i in range(args.runs):  # interleaved: both see the same machine load
                lite.append(timed_rollback(lab_config, i))
                pg.append(timed_rollback(pg_config, i))
            for config in (lab_config, pg_config):
                if json.loads(run(config, "status", "api", "--json").stdout)["live"] != "blue":
                    run(config, "flip", "api", "--to", "blue", "--force", "--reason",
                        "benchmark: back to blue")
            key = Path(doc["audit"]["key_file"])
            lite_url = f"sqlite://{tmp}/appends.db"
            rates = {
                "sqlite": appends_per_second(lite_url, key, args.writers, args.appends),
                "postgresql": appends_per_second(url, key, args.writers, args.appends),
            }
    finally:
        with psycopg.connect(ADMIN_URL, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    def line(samples: list[float]) -> str:
        s = sorted(samples)
        p90 = s[min(len(s) - 1, int(len(s) * 0.9))]
        return f"median {statistics.median(s) * 1000:7.1f} ms   p90 {p90 * 1000:7.1f} ms"

    print(f"runs: {args.runs}; load average (1 min) {load_before:.1f} at the start, "
          f"{os.getloadavg()[0]:.1f} at the end, {os.cpu_count()} CPUs")
    print(f"bluegreen rollback api, SQLite store      {line(lite)}")
    print(f"bluegreen rollback api, PostgreSQL store  {line(pg)}   "
          f"(x{statistics.median(pg) / statistics.median(lite):.2f} of SQLite)")
    for backend, rate in rates.items():
        print(f"audit appends, {args.writers} concurrent writers, {backend:<10}  "
              f"{rate:7.0f} records/s ({args.writers} x {args.appends})")


if __name__ == "__main__":
    main()
