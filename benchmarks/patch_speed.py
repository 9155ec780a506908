"""The patch step against its floor, on the lab, measured in one run.

Usage (as root; starts the lab in the asked shape if none runs):

    BLUEGREEN_LAB_INSTANCE=N .venv/bin/python benchmarks/patch_speed.py \
        [--hosts-per-side 2] [--services web,api] [--service web] [--runs 3]

On the standby (green) hosts of one service, with the service's packages
(`demo-openssl=3.0.15-1 demo-web=1.0.1` on the lab), each measured run starting from the
same state (see `restore`):
  (a) bluegreen's patch step: the function the rollout's patch step calls
      (`patching.patch_side`: the playbook through ansible-runner with bluegreen's
      connection settings, and dpkg read on every host before and after);
  (b) `ansible-playbook playbooks/patch.yml` by hand with stock Ansible settings (no
      ansible.cfg, no ANSIBLE_* variables; strict host keys from the lab inventory);
  (c) the floor: `apt-get update; apt-get install PKGS; systemctl restart demo-web` over
      one plain ssh per host (strict host keys), all hosts in parallel;
  (d) with --tuned: (b) with bluegreen's connection settings (SSH ControlMaster and
      ControlPersist, pipelining, forks = hosts) but without bluegreen (no runner, no
      masters opened beside ansible-playbook's start-up, no dpkg reads).
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


def run_stock(config: LoadedConfig, group: str, new: Sequence[str], workdir: Path,
              playbook: Path, settings: dict[str, str] | None = None) -> float:
    from orchestrator.patching.ssh import close_masters

    env = {k: v for k, v in os.environ.items() if not k.startswith("ANSIBLE_")}
    # Stock Ansible keeps its SSH masters for 60 s in ~/.ansible/cp: a run right after
    # another would start connected. Each run gets an empty socket directory of its own,
    # closed afterwards, so every variant starts without a connection.
    sockets = Path(tempfile.mkdtemp(prefix="cp-", dir="/tmp"))
    env["ANSIBLE_SSH_CONTROL_PATH_DIR"] = str(sockets)
    env.update(settings or {})
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    extra = yaml.safe_dump({"packages": list(new)}, default_flow_style=True).strip()
    cmd = ["ansible-playbook", "-i", str(config.inventory_path), str(playbook),
           "-e", f"target={group}", "-e", "patch_serial=100%", "-e", extra]
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=workdir,
                          check=False, stdin=subprocess.DEVNULL)
    took = time.perf_counter() - t0
    close_masters(sockets)
    shutil.rmtree(sockets, ignore_errors=True)
    if proc.returncode != 0:
        raise SystemExit(f"(b) ansible-playbook failed (rc {proc.returncode}):\n"
                         f"{proc.stdout[-3000:]}")
    return took


def run_tuned(config: LoadedConfig, group: str, new: Sequence[str], workdir: Path,
              playbook: Path, forks: int) -> float:
    from orchestrator.patching.ssh import ansible_ssh_args

    sockets = Path(tempfile.mkdtemp(prefix="cp-", dir="/tmp"))
    extra = {
        "ANSIBLE_SSH_ARGS": ansible_ssh_args(config, sockets),
        "ANSIBLE_PIPELINING": "True",
        "ANSIBLE_FORKS": str(forks),
    }
    try:
        return run_stock(config, group, new, workdir, playbook, extra)
    finally:
        from orchestrator.patching.ssh import close_masters

        close_masters(sockets)
        shutil.rmtree(sockets, ignore_errors=True)


def run_bluegreen(config: LoadedConfig, service: str) -> float:
    from orchestrator.patching import patch_side

    t0 = time.perf_counter()
    patched = patch_side(config, service, "green", None)
    took = time.perf_counter() - t0
    if not patched.ok:
        raise SystemExit(f"(a) bluegreen patch failed: {patched.result.message}")
    if patched.warnings or len(patched.changes.changed_hosts) != len(patched.result.hosts):
        raise SystemExit(f"(a) {patched.changes.summary()}: {patched.warnings}")
    return took


def bench_config(lab: Lab, service: str, workdir: Path, playbook: str | None) -> LoadedConfig:
    doc = yaml.safe_load(lab.paths.config.read_text())
    doc["state"]["path"] = str(workdir / "state.db")
    doc["services"][service]["patch"]["serial"] = "100%"
    doc["services"][service]["patch"]["playbook"] = str(Path(playbook or REPO / "playbooks/patch.yml").resolve())
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
    ap.add_argument("--tuned", action="store_true", help="also (d), see above")
    ap.add_argument("--playbook", help="another patch playbook for (a), (b) and (d)")
    args = ap.parse_args()

    lab = Lab()
    shape = LabShape(tuple(args.services.split(",")), args.hosts_per_side)
    lab.up(shape)
    workdir = Path(tempfile.mkdtemp(prefix="bg-patch-speed-"))
    ssh_config = lab.paths.ssh_config
    try:
        config = bench_config(lab, args.service, workdir, args.playbook)
        svc = config.service(args.service)
        new = [str(p) for p in svc.patch.packages]
        names = {p.name for p in svc.patch.packages}
        old = [f"{n}={v}" for n, v in INITIAL if n in names]
        hosts = [h.name for h in load_fleet(config).service(args.service).green]
        group = svc.sides.green
        playbook = config.playbook_path(args.service)
        print(f"{len(hosts)} standby hosts ({group}), {' '.join(new)} from {' '.join(old)}; "
              f"{os.cpu_count()} cpus, load {os.getloadavg()[0]:.2f} at start")
        keys = "abcd" if args.tuned else "abc"
        times: dict[str, list[float]] = {k: [] for k in keys}
        runners: dict[str, Callable[[], float]] = {
            "a": lambda: run_bluegreen(config, args.service),
            "b": lambda: run_stock(config, group, new, workdir, playbook),
            "c": lambda: run_floor(ssh_config, hosts, new),
            "d": lambda: run_tuned(config, group, new, workdir, playbook, len(hosts)),
        }
        for n in range(args.runs):
            shift = n % len(keys)
            order = keys[shift:] + keys[:shift]  # rotate, so drift hits each variant alike
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
    if args.tuned:
        d = statistics.median(times["d"])
        print(f"(d) ansible-playbook, tuned     {fmt(times['d'])}  (d/c={d / c:.2f} b/d={b / d:.2f})")
    print(f"load at end {os.getloadavg()[0]:.2f} (1 min average)")
    print(f"a/c={a / c:.2f} a/b={a / b:.2f}")


if __name__ == "__main__":
    main()
