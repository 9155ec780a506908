"""A campaign's cost per host and per service, one machine against workers, on the lab.

Usage (as root; brings its own lab up on the PostgreSQL store and down at the end):

    BLUEGREEN_LAB_INSTANCE=N .venv/bin/python benchmarks/campaign_scale.py \
        [--services 4] [--hosts-per-side 1] [--parallel 2] [--runs 1] [--json]

One campaign of S services x H hosts per side (the lab's services s1..sS, the demo
advisory, one wave, bake 0 s in a config copy: baking is a deliberate wait), run three
ways on the same lab and store, each from fresh hosts (`lab reset`):
  one machine:  `campaign run FILE --yes` (the campaign's wave max_parallel = P);
  1 worker:     `campaign run FILE --yes --workers` + one `bluegreen worker --max-parallel P`;
  2 workers:    the same with two worker processes (2 x P services at once at most).
For each: wall time of `campaign run`; the controller's CPU seconds per patched host (user +
system of `campaign run` and the workers, their children included: getrusage
RUSAGE_CHILDREN once they are reaped); the store's round trips per service (PostgreSQL's
own count of committed + rolled back transactions of the database: the store's connection
is autocommit, so every statement outside an explicit transaction is one); and each
rollout step's share of the children's step time (their journals). Ratios are against
the one-machine run of the same round. What is not the controller's: the lab hosts'
work (apt, dpkg, restarts) and the PostgreSQL server's CPU.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shlex
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter, defaultdict
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import IO, Any

import psycopg
import yaml

from orchestrator.lab.database import lab_state_url
from orchestrator.lab.lab import Lab, LabShape
from orchestrator.state.registry import open_store, parse_state_url

REPO = Path(__file__).resolve().parent.parent
BG = [sys.executable, "-m", "orchestrator"]
STEPS = ("precheck", "patch", "verify", "flip", "bake")
VARIANTS = {"one machine": 0, "1 worker": 1, "2 workers": 2}


@dataclass
class Measured:
    variant: str
    wall_s: float
    cpu_s: float
    cpu_s_per_host: float
    transactions: int
    transactions_per_service: float
    audit_records_per_service: float
    peak_connections: int
    """Most sessions on the store's database at once during the run (this script's own
    sampling session not counted)."""
    step_seconds: dict[str, float] = field(default_factory=dict)
    audit_commands: dict[str, int] = field(default_factory=dict)
    """The run's audit records per command (what the chain's appends are spent on)."""


def children_cpu() -> float:
    used = resource.getrusage(resource.RUSAGE_CHILDREN)
    return used.ru_utime + used.ru_stime


def transactions(url: str) -> int:
    """Committed + rolled back transactions of the store's database so far (the server's
    statistics: a backend reports its counts when it ends or at most once a second)."""
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("SELECT pg_stat_clear_snapshot()")
        row = conn.execute("SELECT xact_commit + xact_rollback FROM pg_stat_database "
                           "WHERE datname = current_database()").fetchone()
    assert row is not None
    return int(row[0])


class Sessions:
    """Samples the sessions on the store's database twice a second, on its own thread."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.peak = 0
        self.queries = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        with psycopg.connect(self.url, autocommit=True) as conn:
            while not self._stop.is_set():
                row = conn.execute("SELECT count(*) FROM pg_stat_activity "
                                   "WHERE datname = current_database()").fetchone()
                assert row is not None
                self.queries += 1
                self.peak = max(self.peak, int(row[0]) - 1)
                self._stop.wait(0.5)

    def __enter__(self) -> Sessions:
        self._thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self._stop.set()
        self._thread.join(30)


def audit_commands(url: str, key: Path) -> list[str]:
    store = open_store(parse_state_url(url), audit_key_file=key)
    try:
        return [r.command for r in store.audit_records()]
    finally:
        store.close()


def bench_config(lab: Lab, workdir: Path) -> Path:
    doc = yaml.safe_load(lab.paths.config.read_text())
    for svc in doc["services"].values():  # no bake, no steps (the lab's web has them)
        svc["bake"]["seconds"] = 0
        svc["bake"].pop("steps", None)
        svc["bake"].pop("analysis", None)
    path = workdir / "bluegreen.yml"
    path.write_text(yaml.safe_dump(doc))
    path.chmod(0o644)
    return path


def campaign_file(workdir: Path, name: str, services: list[str], parallel: int) -> Path:
    doc = yaml.safe_load((REPO / "inventories/lab/campaigns/lab-demo.yml").read_text())
    doc["name"] = name
    doc["waves"] = [{"name": "all", "services": services, "max_parallel": parallel,
                     "on_failure": "continue"}]
    path = workdir / f"{name}.yml"
    path.write_text(yaml.safe_dump(doc))
    return path


def start_worker(config: Path, parallel: int, log: Path) -> tuple[subprocess.Popen[str], IO[str]]:
    out = log.open("w")
    proc = subprocess.Popen([*BG, "-c", str(config), "worker", "--site", "default",
                             "--max-parallel", str(parallel), "--json"],
                            stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                            text=True, cwd=REPO)
    deadline = time.monotonic() + 120
    while '"started"' not in log.read_text():
        if proc.poll() is not None or time.monotonic() > deadline:
            raise SystemExit(f"a worker did not start: {log.read_text()[-2000:]}")
        time.sleep(0.2)
    return proc, out


def stop_worker(proc: subprocess.Popen[str]) -> None:
    if proc.poll() is None:
        proc.terminate()
    try:
        proc.wait(300)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(60)


def step_seconds(url: str, key: Path, since: float) -> tuple[dict[str, float], list[str]]:
    """Seconds per step, summed over the rollouts started after `since`; their statuses."""
    store = open_store(parse_state_url(url), audit_key_file=key)
    took: dict[str, float] = defaultdict(float)
    statuses = []
    try:
        for run in store.list_runs():
            if run.kind != "rollout" or run.started_at.timestamp() < since:
                continue
            statuses.append(f"{run.service}:{run.status}")
            begun: dict[str, float] = {}
            for entry in store.journal(run.run_id):
                if entry.phase == "begin":
                    begun[entry.step] = entry.at.timestamp()
                elif entry.step in begun:
                    took[entry.step] += entry.at.timestamp() - begun.pop(entry.step)
    finally:
        store.close()
    return dict(took), statuses


def measure(lab: Lab, config: Path, url: str, key: Path, workdir: Path, variant: str,
            services: list[str], hosts: int, parallel: int, name: str) -> Measured:
    lab.reset()
    workers = VARIANTS[variant]
    file = campaign_file(workdir, name, services, parallel)
    time.sleep(1.5)  # the reset's sessions have reported their transactions
    records = len(audit_commands(url, key))
    before_x, before_cpu, since = transactions(url), children_cpu(), time.time()
    sessions = Sessions(url).__enter__()
    procs = [start_worker(config, parallel, workdir / f"{name}-worker{i}.log")
             for i in range(workers)]
    try:
        argv = [*BG, "-c", str(config), "campaign", "run", str(file), "--yes", "--json",
                *(["--workers"] if workers else [])]
        started = time.perf_counter()
        done = subprocess.run(argv, capture_output=True, text=True, cwd=REPO, timeout=3600,
                              check=False, stdin=subprocess.DEVNULL)
        wall = time.perf_counter() - started
    finally:
        for proc, out in procs:
            stop_worker(proc)
            out.close()
        sessions.__exit__()
    cpu = children_cpu() - before_cpu
    time.sleep(1.5)
    count = transactions(url) - before_x - 1  # the read above, itself one
    count -= sessions.queries  # the sampler's own reads, one transaction each
    if done.returncode != 0:
        raise SystemExit(f"{variant}: campaign run exited {done.returncode}:\n"
                         f"{done.stdout[-2000:]}\n{done.stderr[-2000:]}")
    steps, statuses = step_seconds(url, key, since)
    if sorted(statuses) != sorted(f"{s}:done" for s in services):
        raise SystemExit(f"{variant}: the rollouts ended {statuses}")
    patched = len(services) * hosts
    added = audit_commands(url, key)[records:]
    return Measured(variant, wall, cpu, cpu / patched, count, count / len(services),
                    len(added) / len(services), sessions.peak, steps,
                    dict(Counter(added).most_common()))


def shares(steps: dict[str, float]) -> str:
    total = sum(steps.values()) or 1.0
    names = [s for s in STEPS if s in steps] + sorted(set(steps) - set(STEPS))
    return "  ".join(f"{s} {steps[s] / total:4.0%}" for s in names)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--services", type=int, default=4, help="S: lab services s1..sS")
    ap.add_argument("--hosts-per-side", type=int, default=1, help="H")
    ap.add_argument("--parallel", type=int, default=2,
                    help="P: services at once per machine (wave max_parallel, worker "
                    "--max-parallel)")
    ap.add_argument("--runs", type=int, default=1, help="rounds (each runs all three ways)")
    ap.add_argument("--json", action="store_true", help="one JSON document at the end")
    args = ap.parse_args()
    command = "BLUEGREEN_LAB_INSTANCE={} .venv/bin/python benchmarks/campaign_scale.py {}".format(
        os.environ.get("BLUEGREEN_LAB_INSTANCE", "0"),
        shlex.join(sys.argv[1:]))
    services = [f"s{i}" for i in range(1, args.services + 1)]
    lab = Lab()
    workdir = Path(tempfile.mkdtemp(prefix="bg-campaign-scale-"))
    results: list[Measured] = []
    load_before = os.getloadavg()[0]
    try:
        lab.up(LabShape(tuple(services), args.hosts_per_side,
                        state_url=lab_state_url(lab.paths, "postgresql")))
        config = bench_config(lab, workdir)
        url = str(yaml.safe_load(config.read_text())["state"]["url"])
        key = lab.paths.audit_key
        for n in range(args.runs):
            order = list(VARIANTS)
            order = order[n % 3:] + order[:n % 3]  # rotate: drift hits each way alike
            for variant in order:
                name = f"scale-{n + 1}-{VARIANTS[variant]}w"
                m = measure(lab, config, url, key, workdir, variant, services,
                            args.hosts_per_side, args.parallel, name)
                results.append(m)
                if not args.json:
                    print(f"round {n + 1} {variant:<12} wall {m.wall_s:6.1f} s  "
                          f"load {os.getloadavg()[0]:.1f}", flush=True)
    finally:
        lab.down()
        import shutil

        shutil.rmtree(workdir, ignore_errors=True)
    summary = summarize(results, args, load_before)
    if args.json:
        print(json.dumps({"command": command, **summary,
                          "runs": [asdict(m) for m in results]}, indent=2))
        return
    print(f"command: {command}")
    print(f"{args.services} services x {args.hosts_per_side} host(s) per side "
          f"({args.services * args.hosts_per_side} patched hosts), P={args.parallel}, "
          f"{os.cpu_count()} CPUs, load {load_before:.1f} at start, "
          f"{os.getloadavg()[0]:.1f} at end")
    for variant, row in summary["variants"].items():
        print(f"{variant:<12} wall {row['wall_s']:6.1f} s (x{row['wall_ratio']:.2f})  "
              f"cpu/host {row['cpu_s_per_host']:5.2f} s (x{row['cpu_ratio']:.2f})  "
              f"store xacts/service {row['transactions_per_service']:6.1f} "
              f"(x{row['transactions_ratio']:.2f})  audit records/service "
              f"{row['audit_records_per_service']:4.1f}  peak sessions {row['peak_connections']}")
        print(f"{'':<12} steps: {shares(row['step_seconds'])}")
    last = results[-1].audit_commands
    print("audit records of the last run, by command: "
          + ", ".join(f"{name} {n}" for name, n in last.items()))


def summarize(results: list[Measured], args: argparse.Namespace,
              load: float) -> dict[str, Any]:
    by: dict[str, list[Measured]] = defaultdict(list)
    for m in results:
        by[m.variant].append(m)

    def med(variant: str, attr: str) -> float:
        return float(statistics.median(getattr(m, attr) for m in by[variant]))

    base = "one machine"
    variants = {}
    for variant in VARIANTS:
        steps: dict[str, float] = defaultdict(float)
        for m in by[variant]:
            for step, s in m.step_seconds.items():
                steps[step] += s / len(by[variant])
        variants[variant] = {
            "wall_s": med(variant, "wall_s"),
            "wall_ratio": med(variant, "wall_s") / med(base, "wall_s"),
            "cpu_s_per_host": med(variant, "cpu_s_per_host"),
            "cpu_ratio": med(variant, "cpu_s_per_host") / med(base, "cpu_s_per_host"),
            "transactions_per_service": med(variant, "transactions_per_service"),
            "transactions_ratio": (med(variant, "transactions_per_service")
                                   / max(med(base, "transactions_per_service"), 1e-9)),
            "audit_records_per_service": med(variant, "audit_records_per_service"),
            "peak_connections": max(m.peak_connections for m in by[variant]),
            "step_seconds": dict(steps),
        }
    return {"services": args.services, "hosts_per_side": args.hosts_per_side,
            "parallel": args.parallel, "cpus": os.cpu_count(), "load_at_start": load,
            "variants": variants}


if __name__ == "__main__":
    main()
