"""Probe speed on the lab's 8 hosts, strict host keys everywhere, measured in one run.

(a) plain `pytest SUITE --hosts=ssh://... --ssh-config=LAB/ssh/ssh_config` (subprocess);
(b) the same file through bluegreen (pytest in-process, `host` over one strict paramiko
    connection per host; see orchestrator/probes/suites.py);
(c) the floor: 20 raw commands per host over parallel strict paramiko connections.

Usage (lab up first: `BLUEGREEN_LAB_INSTANCE=1 bluegreen lab up`):

    BLUEGREEN_LAB_INSTANCE=1 .venv/bin/python benchmarks/probe_speed.py \
        [--suite /work/shared/benchmarks/testinfra_20_checks.py] [--repeat 3]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from orchestrator.config.loaded import load_config
from orchestrator.inventory import load_fleet
from orchestrator.lab.paths import LabPaths
from orchestrator.probes.base import ProbeTarget
from orchestrator.probes.connection import SSHConnection
from orchestrator.probes.gate import targets_for
from orchestrator.probes.suites import run_suite

DEFAULT_SUITE = "/work/shared/benchmarks/testinfra_20_checks.py"

# What the 20 checks ask the host, one command each (the floor).
FLOOR_COMMANDS = [
    "systemctl is-active ssh",
    "systemctl is-enabled ssh",
    "ss -Htln sport = :22",
    "stat -c %a /etc/shadow",
    "stat -c %U /etc/passwd",
    "dpkg-query -W python3",
    "dpkg-query -W -f='${Version}' openssh-server",
    "ss -Htln sport = :23",
    "cat /proc/sys/kernel/randomize_va_space",
    "id -u root",
    "dpkg-query -W sudo",
    "dpkg-query -W telnetd || true",
    "hostname",
    "test -d /tmp",
    "test -e /etc/motd",
    "grep -q Include /etc/ssh/sshd_config",
    "systemctl is-active dbus",
    "systemctl is-active systemd-journald",
    "cat /proc/1/maps",
    "test ! -e /var/run/reboot-required",
]


def lab_targets(config_path: Path) -> list[ProbeTarget]:
    config = load_config(config_path)
    fleet = load_fleet(config)
    hosts = [
        h
        for service in sorted(config.services)
        for side in ("blue", "green")
        for h in fleet.service(service).side(side)
    ]
    return targets_for(config, hosts)


def plain_pytest(suite: str, targets: list[ProbeTarget], ssh_config: Path) -> float:
    cmd = [
        sys.executable,
        "-m",
        "pytest",
        suite,
        "--hosts=" + ",".join(f"ssh://{t.name}" for t in targets),
        f"--ssh-config={ssh_config}",
        "-p",
        "no:cacheprovider",
        "-c",
        "/dev/null",
        "--rootdir=/tmp",
        "-q",
    ]
    t0 = time.monotonic()
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False, cwd="/tmp")
    took = time.monotonic() - t0
    if proc.returncode != 0:
        raise SystemExit(f"plain pytest failed (rc {proc.returncode}):\n{proc.stdout[-2000:]}")
    return took


def ours(suite: str, targets: list[ProbeTarget]) -> float:
    t0 = time.monotonic()
    report = run_suite(suite, targets, deadline_s=120)
    took = time.monotonic() - t0
    if not report.ok:
        raise SystemExit(f"bluegreen run failed: {report.failures[:3]}")
    return took


def floor(targets: list[ProbeTarget]) -> float:
    def one(target: ProbeTarget) -> None:
        with SSHConnection(target) as conn:
            for command in FLOOR_COMMANDS:
                conn.run(command, 30)

    t0 = time.monotonic()
    with ThreadPoolExecutor(max_workers=len(targets)) as pool:
        list(pool.map(one, targets))
    return time.monotonic() - t0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--suite", default=DEFAULT_SUITE)
    parser.add_argument("--repeat", type=int, default=3, help="runs of (b) and (c); median")
    parser.add_argument("--skip-plain", action="store_true", help="no (a): it takes minutes")
    parser.add_argument("--hosts", type=int, help="only the first N hosts of the lab")
    args = parser.parse_args()
    paths = LabPaths.default()
    targets = lab_targets(paths.config)[: args.hosts]
    ssh_config = paths.root / "ssh" / "ssh_config"
    print(f"{len(targets)} hosts, suite {args.suite}, strict host keys")
    a = None if args.skip_plain else plain_pytest(args.suite, targets, ssh_config)
    if a is not None:
        print(f"(a) plain pytest --hosts=ssh://...   {a:7.2f} s")
    b = statistics.median(ours(args.suite, targets) for _ in range(args.repeat))
    print(f"(b) bluegreen engine (median of {args.repeat})  {b:7.2f} s")
    c = statistics.median(floor(targets) for _ in range(args.repeat))
    print(f"(c) floor: 20 raw commands/host      {c:7.2f} s")
    if a is not None:
        print(f"a/b = {a / b:.1f}x faster (target >= 10x)")
    print(f"b/c = {b / c:.2f}x the floor (target <= 3x), load {os.getloadavg()[0]:.1f}")
    print("reproduce: BLUEGREEN_LAB_INSTANCE=N .venv/bin/python benchmarks/probe_speed.py")


if __name__ == "__main__":
    main()
