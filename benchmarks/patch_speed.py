"""The patch step against its floor, on the lab, measured in one run.

Usage (as root; starts the lab in the asked shape if none runs):

    BLUEGREEN_LAB_INSTANCE=N .venv/bin/python benchmarks/patch_speed.py \
        [--hosts-per-side 2] [--services web,api] [--service web] [--runs 3]

On the standby (green) hosts of one service, with the service's packages
(`demo-openssl=3.0.15-1 demo-web=1.0.1` on the lab), each measured run starting from the
same state (see `restore`):
  (a) bluegreen's patch step: the function the rollout's patch step calls, through
      ansible-runner with bluegreen's connection settings;
  (b) `ansible-playbook playbooks/patch.yml` by hand with stock Ansible settings (no
      ansible.cfg, no ANSIBLE_* variables; strict host keys from the lab inventory);
  (c) the floor: `apt-get update; apt-get install PKGS; systemctl restart demo-web` over
      one plain ssh per host (strict host keys), all hosts in parallel.
Every run checks that the hosts ended at the asked versions. (a) and (b) use
`patch_serial: 100%` (all standby hosts at once, as the floor does): the lab's own config
says 50%, which patches the side in two batches.

Prints each time, the machine's load, and as its last line `a/c=R1 a/b=R2` (medians).
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import yaml

from orchestrator.config.loaded import LoadedConfig, load_config
from orchestrator.inventory import load_fleet
from orchestrator.lab.lab import Lab, LabShape
from orchestrator.lab.packages import INITIAL

REPO = Path(__file__).resolve().parent.parent


def ssh(ssh_config: Path, host: str, command: str, timeout: float = 300) -> str:
    proc = subprocess.run(
        ["ssh", "-F", str(ssh_config), host, command],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
        stdin=subprocess.DEVNULL,
    )
    if proc.returncode != 0:
        raise SystemExit(f"{host}: `{command[:80]}...` failed (rc {proc.returncode}): "
                         f"{proc.stderr.strip()[-600:]}")
    return proc.stdout


def on_all(hosts: Sequence[str], one: Callable[[str], str]) -> dict[str, str]:
    with ThreadPoolExecutor(max_workers=max(1, len(hosts))) as pool:
        return dict(zip(hosts, pool.map(one, hosts), strict=True))


# The starting state of every measured run: the vulnerable versions, demo-web restarted on
# them, and package lists that do not know the lab repository and are an hour old (as when
# a fix was published after the last refresh). Every variant must really refresh.
RESTORE = (
    "set -e; export DEBIAN_FRONTEND=noninteractive; apt-get update -q >/dev/null; "
    "apt-get install -y -q --allow-downgrades {old} >/dev/null 2>&1; "
    "systemctl restart demo-web; "
    "rm -f /var/lib/apt/lists/*bluegreen-repo*; touch -d '1 hour ago' /var/lib/apt/lists; "
    "dpkg-query -W -f='${{Package}}=${{Version}}\\n' {names}"
)
FLOOR = (
    "set -e; export DEBIAN_FRONTEND=noninteractive; apt-get update -q >/dev/null; "
    "apt-get install -y -q {new} >/dev/null 2>&1; systemctl restart demo-web"
)
VERSIONS = "dpkg-query -W -f='${{Package}}=${{Version}}\\n' {names}"


def expect_versions(ssh_config: Path, hosts: Sequence[str], wanted: Sequence[str],
                    what: str) -> None:
    names = " ".join(w.split("=", 1)[0] for w in wanted)
    found = on_all(hosts, lambda h: ssh(ssh_config, h, VERSIONS.format(names=names)))
    for host, out in found.items():
        if sorted(out.split()) != sorted(wanted):
            raise SystemExit(f"{what}: {host} has {out.split()}, expected {list(wanted)}")


def restore(ssh_config: Path, hosts: Sequence[str], old: Sequence[str]) -> None:
    names = " ".join(o.split("=", 1)[0] for o in old)
    cmd = RESTORE.format(old=" ".join(old), names=names)
    found = on_all(hosts, lambda h: ssh(ssh_config, h, cmd))
    for host, out in found.items():
        if sorted(out.split()) != sorted(old):
            raise SystemExit(f"restore: {host} has {out.split()}, expected {list(old)}")


def run_floor(ssh_config: Path, hosts: Sequence[str], new: Sequence[str]) -> float:
    cmd = FLOOR.format(new=" ".join(new))
    t0 = time.perf_counter()
    on_all(hosts, lambda h: ssh(ssh_config, h, cmd))
    return time.perf_counter() - t0


def run_stock(config: LoadedConfig, group: str, new: Sequence[str], workdir: Path) -> float:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ANSIBLE_")}
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    extra = yaml.safe_dump({"packages": list(new)}, default_flow_style=True).strip()
    cmd = ["ansible-playbook", "-i", str(config.inventory_path), str(REPO / "playbooks/patch.yml"),
           "-e", f"target={group}", "-e", "patch_serial=100%", "-e", extra]
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=workdir,
                          check=False, stdin=subprocess.DEVNULL)
    took = time.perf_counter() - t0
    if proc.returncode != 0:
        raise SystemExit(f"(b) ansible-playbook failed (rc {proc.returncode}):\n"
                         f"{proc.stdout[-3000:]}")
    return took


def run_bluegreen(config: LoadedConfig, service: str) -> float:
    from orchestrator.patching import patch_hosts

    t0 = time.perf_counter()
    result = patch_hosts(config, service, "green", None)
    took = time.perf_counter() - t0
    if not result.ok:
        raise SystemExit(f"(a) bluegreen patch failed: {result.message}")
    return took


def bench_config(lab: Lab, service: str, workdir: Path) -> LoadedConfig:
    doc = yaml.safe_load(lab.paths.config.read_text())
    doc["state"]["path"] = str(workdir / "state.db")
    doc["services"][service]["patch"]["serial"] = "100%"
    path = workdir / "bluegreen.yml"
    path.write_text(yaml.safe_dump(doc))
    return load_config(path)


def fmt(xs: Sequence[float]) -> str:
    return f"median {statistics.median(xs):6.2f} s  runs {[round(x, 2) for x in xs]}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--hosts-per-side", type=int, default=2)
    ap.add_argument("--services", default="web,api", help="lab shape (if the lab is not up)")
    ap.add_argument("--service", default="web", help="the service whose green side is patched")
    ap.add_argument("--runs", type=int, default=3)
    args = ap.parse_args()

    lab = Lab()
    shape = LabShape(tuple(args.services.split(",")), args.hosts_per_side)
    lab.up(shape)
    workdir = Path(tempfile.mkdtemp(prefix="bg-patch-speed-"))
    ssh_config = lab.paths.ssh_config
    try:
        config = bench_config(lab, args.service, workdir)
        svc = config.service(args.service)
        new = [str(p) for p in svc.patch.packages]
        names = {p.name for p in svc.patch.packages}
        old = [f"{n}={v}" for n, v in INITIAL if n in names]
        hosts = [h.name for h in load_fleet(config).service(args.service).green]
        group = svc.sides.green
        print(f"{len(hosts)} standby hosts ({group}), {' '.join(new)} from {' '.join(old)}; "
              f"{os.cpu_count()} cpus, load {os.getloadavg()[0]:.2f} at start")
        times: dict[str, list[float]] = {"a": [], "b": [], "c": []}
        runners: dict[str, Callable[[], float]] = {
            "a": lambda: run_bluegreen(config, args.service),
            "b": lambda: run_stock(config, group, new, workdir),
            "c": lambda: run_floor(ssh_config, hosts, new),
        }
        for n in range(args.runs):
            order = "abc"[n % 3:] + "abc"[: n % 3]  # rotate, so drift hits each variant alike
            for key in order:
                restore(ssh_config, hosts, old)
                took = runners[key]()
                expect_versions(ssh_config, hosts, new, f"({key}) run {n + 1}")
                times[key].append(took)
                print(f"run {n + 1} ({key}) {took:6.2f} s  load {os.getloadavg()[0]:.2f}",
                      flush=True)
        restore(ssh_config, hosts, old)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    a, b, c = (statistics.median(times[k]) for k in "abc")
    print(f"(a) bluegreen patch step        {fmt(times['a'])}")
    print(f"(b) ansible-playbook, stock     {fmt(times['b'])}")
    print(f"(c) floor: apt over ssh         {fmt(times['c'])}")
    print(f"load at end {os.getloadavg()[0]:.2f} (1 min average)")
    print(f"a/c={a / c:.2f} a/b={a / b:.2f}")


if __name__ == "__main__":
    main()
