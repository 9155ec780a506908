"""What writing the audit head to the witnesses costs `bluegreen rollback` (whole process).

Usage (lab up, as root):  .venv/bin/python benchmarks/witness_cost.py [--runs 15]

Three copies of the lab's config, each with a state store of its own, differ only in
`audit.witness`: none (nothing written: the baseline), the append-only file, and the file
plus a real syslog collector (Debian's rsyslogd, started here on a loopback TCP port, RFC
5424). In every round each variant rolls the lab's `api` there and back (so each store
finds the router where it left it), so load drift on a shared machine hits all three
alike; the figure is each median and its difference to the baseline. The collector is stopped at the end (only the PID started here).
"""

from __future__ import annotations

import argparse
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

RSYSLOGD = "/usr/sbin/rsyslogd"


def timed(argv: list[str]) -> float:
    started = time.perf_counter()
    proc = subprocess.run(argv, capture_output=True, text=True, check=False)
    elapsed = time.perf_counter() - started
    if proc.returncode != 0:
        raise SystemExit(f"failed: {' '.join(argv)}: {proc.stderr.strip()}")
    return elapsed


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_collector(work: Path) -> tuple[subprocess.Popen[bytes], int]:
    port = free_port()
    conf = work / "rsyslog.conf"
    conf.write_text(
        f'global(workDirectory="{work}")\nmodule(load="imtcp")\n'
        f'ruleset(name="r") {{ action(type="omfile" file="{work}/collector.log") }}\n'
        f'input(type="imtcp" address="127.0.0.1" port="{port}" ruleset="r")\n'
    )
    proc = subprocess.Popen([RSYSLOGD, "-n", "-f", str(conf), "-i", str(work / "pid")],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return proc, port
        except OSError:
            time.sleep(0.05)
    proc.kill()
    raise SystemExit("rsyslogd did not start listening")


def variant(base: dict[str, object], work: Path, name: str, witness: dict[str, object]) -> Path:
    doc = dict(base)
    doc["state"] = {"path": str(work / name / "state.db")}
    doc["audit"] = {"key_file": str(work / "audit.key"), "witness": witness}
    path = work / f"{name}.yml"
    path.write_text(yaml.safe_dump(doc))
    return path


def in_process(work: Path, port: int, config: Path) -> dict[str, float]:
    """The witness's own steps, timed in this process (no interpreter start-up in them):
    reading the head (done at a command's start and end) and one publish per witness."""
    from orchestrator.state.audit import AuditHead
    from orchestrator.state.audit_settings import WitnessSettings
    from orchestrator.state.sqlite import read_head
    from orchestrator.state.witness import publish

    state = Path(yaml.safe_load(config.read_text())["state"]["path"])
    head = read_head(state) or AuditHead(count=1, head_hash="0" * 64, key_id="0" * 16)
    steps = {
        "read the head": lambda: read_head(state),
        "publish to the file": lambda: publish(
            head, work / "micro.db", WitnessSettings(syslog="off", file=work / "micro.log")),
        "publish to syslog over TCP": lambda: publish(
            head, work / "micro.db", WitnessSettings(syslog=f"tcp://127.0.0.1:{port}")),
    }
    out = {}
    for name, step in steps.items():
        samples = []
        for _ in range(200):
            started = time.perf_counter()
            step()
            samples.append(time.perf_counter() - started)
        out[name] = statistics.median(samples) * 1000
    return out


def main() -> None:
    from orchestrator.lab.paths import LabPaths

    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=15)
    ap.add_argument("--config", type=Path, default=LabPaths.default().config)
    args = ap.parse_args()
    base = yaml.safe_load(args.config.read_text())
    bg = [sys.executable, "-m", "orchestrator"]
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        os.chmod(work, 0o700)
        collector, port = start_collector(work)
        try:
            configs = {
                "no witness": variant(base, work, "none", {"syslog": "off"}),
                "file": variant(base, work, "file", {"syslog": "off",
                                                     "file": str(work / "heads.log")}),
                "file + syslog tcp": variant(base, work, "syslog", {
                    "syslog": f"tcp://127.0.0.1:{port}", "file": str(work / "heads.log")}),
            }
            for config in configs.values():  # full load once: each leaves its snapshot
                subprocess.run([*bg, "-c", str(config), "status", "api"], check=True,
                               capture_output=True)
            samples: dict[str, list[float]] = {name: [] for name in configs}
            floor = []
            for i in range(args.runs):
                floor.append(timed([sys.executable, "-c", "import click"]))
                for name, config in configs.items():
                    # there and back: each store finds the router where it left it
                    for leg in ("there", "back"):
                        samples[name].append(timed([*bg, "-c", str(config), "rollback", "api",
                                                    "--reason", f"witness benchmark {i} {leg}"]))
            micro = in_process(work, port, configs["file"])
            heads = (work / "heads.log").read_text().count("\n")
            received = (work / "collector.log").read_text().count("audit head")
        finally:
            collector.send_signal(signal.SIGTERM)
            collector.wait(timeout=10)
    base_ms = statistics.median(samples["no witness"]) * 1000
    print(f"rollbacks per variant: {2 * args.runs} (interleaved), "
          f"load {os.getloadavg()[0]:.1f}")
    print(f"floor: python + import click     median {statistics.median(floor) * 1000:7.1f} ms")
    for name, values in samples.items():
        ms = statistics.median(values) * 1000
        print(f"rollback api, {name:<18} median {ms:7.1f} ms   ({ms - base_ms:+6.1f} ms)")
    print(f"heads in the file: {heads}; at the collector: {received}")
    for name, ms in micro.items():
        print(f"in process, {name:<28} median {ms:7.3f} ms")


if __name__ == "__main__":
    main()
