"""`Lab`: bring the local fleet up and down, inspect it, inject faults.

Everything the lab makes is under `LabPaths.root` (plus the bridge and namespaces named
`bglab*`), so `down` can find and remove it even after a crashed `up`. What a lab is made of
is in shape.py, what it needs of the machine in preflight.py, the waits in waits.py.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from functools import partial
from pathlib import Path
from typing import Any

from orchestrator.errors import BadInput, LabError
from orchestrator.lab import (
    balancer,
    faults,
    files,
    hosts,
    image,
    metrics,
    net,
    nginx,
    packages,
    preflight,
    repokey,
    security,
    sites,
    waits,
)
from orchestrator.lab.balancer import haproxy_command as haproxy_command
from orchestrator.lab.database import forget_reimaged
from orchestrator.lab.hosts import HostSpec
from orchestrator.lab.paths import REPO_PORT, LabPaths
from orchestrator.lab.proc import alive, kill_and_wait, run
from orchestrator.lab.proc import lab_processes as _lab_processes
from orchestrator.lab.shape import MAX_HOSTS as MAX_HOSTS
from orchestrator.lab.shape import LabShape as LabShape
from orchestrator.lab.shape import LabState as LabState
from orchestrator.lab.shape import UpResult as UpResult

Progress = Callable[[str], None]

class Lab:
    def __init__(self, paths: LabPaths | None = None, say: Progress | None = None) -> None:
        self.paths = paths or LabPaths.default()
        self.say: Progress = say or (lambda _msg: None)

    # ---- reading -------------------------------------------------------------------------
    def load(self) -> LabState | None:
        try:
            return LabState.from_json(self.paths.state_file.read_text())
        except FileNotFoundError:
            return None
        except (ValueError, KeyError, TypeError) as exc:
            raise LabError(
                f"{self.paths.state_file} is unreadable ({exc})",
                hint="run `bluegreen lab down` to clear the lab",
            ) from exc

    def require(self) -> LabState:
        state = self.load()
        if state is None:
            raise LabError("no lab is running", hint="start one with `bluegreen lab up`")
        return state

    def _save(self, state: LabState) -> None:
        tmp = self.paths.state_file.with_suffix(".tmp")
        tmp.write_text(state.to_json())
        tmp.replace(self.paths.state_file)

    def problems(self, state: LabState) -> list[str]:
        """What is wrong with a running lab (empty when it is whole)."""
        found = [f"host {h} is not running" for h, pid in state.pids.items() if not alive(pid)]
        if state.sites:
            return found + sites.problems(state.sites)
        if not alive(state.haproxy_pid):
            found.append(f"{state.shape.router} is not running")
        if not alive(state.repo_pid):
            found.append("the apt repository server is not running")
        if state.shape.router == "haproxy" and not alive(state.prometheus_pid):
            found.append("prometheus is not running")
        if state.shape.router == "haproxy" and not Path(
                balancer.exposure_maps(self.paths)[0]).exists():
            found.append("its haproxy.cfg was written by an older bluegreen (no exposure maps)")
        if state.shape.router == "haproxy" and not files.has_steps(self.paths.config):
            found.append("its bluegreen.yml has no bake steps for web (written by an older "
                         "bluegreen)")
        return found

    def status(self) -> dict[str, Any]:
        state = self.require()
        p = self.paths
        lb = p if not state.sites else sites.site_paths(p, state.sites[0])  # site1's HAProxy
        return {
            "config": str(p.config),
            "inventory": str(p.inventory),
            "ssh_config": str(p.ssh_config),
            "known_hosts": str(p.known_hosts),
            "router": state.shape.router,
            **({"haproxy_socket": str(lb.haproxy_socket), "map_file": str(lb.map_file),
                "prometheus": None if state.sites else metrics.url(p)}
               if state.shape.router == "haproxy" else
               {"nginx_conf": str(nginx.conf(p)), "live_file": str(nginx.live_file(p)),
                "prometheus": None}),
            "repo_url": f"http://{self.paths.gateway}:{REPO_PORT}/",
            "security_updates": self._security_count(),
            "services": list(state.shape.services),
            "hosts_per_side": state.shape.hosts_per_side,
            "hosts": [
                {
                    "name": h.name,
                    "service": h.service,
                    "side": h.side,
                    "address": h.address,
                    "running": alive(state.pids.get(h.name, 0)),
                    "faults": state.faults.get(h.name, []),
                }
                for h in state.hosts
            ],
            "frontends": {
                s: f"http://127.0.0.1:{balancer.frontend_port(self.paths, i)}"
                for i, s in enumerate(state.shape.services)
            },
            "problems": self.problems(state),
            **({"sites": sites.status(self.paths, state.sites)} if state.sites else {}),
        }

    def host(self, name: str) -> tuple[LabState, HostSpec]:
        state = self.require()
        for h in state.hosts:
            if h.name == name:
                return state, h
        raise BadInput(
            f"no lab host named {name!r}",
            hint=f"lab hosts: {', '.join(h.name for h in state.hosts)}",
        )

    def exec(
        self, name: str, argv: Sequence[str], *, timeout: float = 60, check: bool = True
    ) -> subprocess.CompletedProcess[str]:
        """Run a command inside a lab host (bypassing SSH: for tests, faults and the demo)."""
        state, _ = self.host(name)
        return hosts.exec_in(state.pids[name], list(argv), timeout=timeout, check=check)

    # ---- up ------------------------------------------------------------------------------
    def preflight(self) -> None:
        preflight.preflight()

    def up(self, shape: LabShape | None = None) -> UpResult:
        shape = shape or LabShape()
        shape.validate()
        self.preflight()
        started = time.monotonic()
        existing = self.load()
        if existing is not None:
            if existing.shape != shape:
                raise LabError(
                    f"another lab is running (services {','.join(existing.shape.services)}, "
                    f"{existing.shape.hosts_per_side} hosts per side)",
                    hint="run `bluegreen lab down` first, or ask for the same shape",
                )
            if not self.problems(existing):
                return UpResult(False, time.monotonic() - started, self.status())
            self.say(
                "the running lab is damaged ("
                + "; ".join(self.problems(existing))
                + "): rebuilding it"
            )
            self.down()
        elif self.paths.root.exists() and any(self.paths.root.iterdir()):
            self.say("clearing what an earlier, unfinished lab left")
            self.down()
        taken = balancer.check_ports_free(
            [balancer.frontend_port(self.paths, i) for i in range(len(shape.services))]
            + [self.paths.haproxy_metrics_port, self.paths.prometheus_port]
        )
        if taken:
            raise LabError(
                f"port(s) {', '.join(map(str, taken))} on 127.0.0.1 are already in use",
                hint="stop what listens there (`ss -ltnp`) or run `bluegreen lab down`",
            )
        net.check_subnet_free(self.paths)
        try:
            self._build(shape)
        except BaseException:
            self.say("lab up failed: removing what it made")
            self.down()
            raise
        return UpResult(True, time.monotonic() - started, self.status())

    def _build(self, shape: LabShape) -> None:
        p = self.paths
        for d in (p.root, p.hosts, p.ssh, p.logs, p.inventory.parent):
            d.mkdir(parents=True, exist_ok=True)
        p.root.chmod(0o700)
        specs = shape.host_specs(p.subnet_prefix)
        lower = self._lower()
        self.say("publishing the lab apt repository")
        packages.publish_repo(packages.ensure_debs(p), p.repo, self._security(),
                              sign=lambda folders: repokey.sign_suites(p, folders))
        state = LabState(shape=shape, hosts=specs,
                         sites=sites.plan(p, shape.services, shape.sites) if shape.sites else [])
        if not state.sites:
            net.ensure_bridge(p)
            state.repo_pid = self._start_repo()
        for site in state.sites:  # its namespace, bridge and repository (sites.py)
            site.repo_pid = sites.start_net(p, site)
            self._save(state)
        self._save(state)
        self._keys(specs)
        pub = (p.client_key.with_suffix(".pub")).read_text()
        self.say(f"booting {len(specs)} hosts")
        for spec in specs:
            net.create_host_net(p, spec.name, spec.index, spec.address,
                                sites.link_of(state.sites, spec.service))
            hosts.prepare_root(p, spec, lower, p.ssh / "hostkeys" / spec.name, pub)
            state.pids[spec.name] = hosts.boot(p, spec)
            self._save(state)
        p.ssh_config.write_text(files.ssh_config(p, specs))
        pubkeys = {s.name: (p.ssh / "hostkeys" / f"{s.name}.pub").read_text() for s in specs}
        p.known_hosts.write_text(files.known_hosts(specs, pubkeys))
        p.inventory.write_text(files.inventory(p, shape.services, specs))
        p.config.write_text(files.bluegreen_config(p, shape.services, shape.state_url,
                                                   router=shape.router, sites=state.sites))
        own = [sites.site_paths(p, s).inventory for s in state.sites]
        for site, inventory in zip(state.sites, own, strict=True):
            inventory.parent.mkdir(parents=True, exist_ok=True)
            inventory.write_text(files.inventory(p, site.services, specs))
        # code bluegreen runs (orchestrator.trust): whatever the umask, nobody else writes it
        for path in (p.inventory.parent, p.inventory, p.config, p.ssh_config, *own,
                     *(i.parent for i in own)):
            path.chmod(path.stat().st_mode & ~0o022)
        if shape.state_url is not None:  # a server database: its schema is made explicitly
            from orchestrator.state.registry import backend, parse_state_url

            location = parse_state_url(shape.state_url)
            backend(location).migrate(location, audit_key_file=p.audit_key)
        (p.root / "state").mkdir(mode=0o700, exist_ok=True)
        p.audit_key.parent.mkdir(mode=0o700, exist_ok=True)
        self._wait_hosts(state, specs)
        if shape.router == "nginx":
            nginx.write_files(p, shape.services, specs)
            self.say("starting nginx")
            state.haproxy_pid = nginx.start(p)
            self._save(state)
            self._wait_haproxy(shape)
            return
        for site in state.sites:
            self.say(f"starting {site.name}'s HAProxy")
            site.haproxy_pid = sites.start_balancer(p, site, shape.services, specs)
            self._save(state)
        if state.sites:
            return
        balancer.write_files(p, shape.services, specs)
        (p.haproxy / "bluegreen.map").chmod(0o644)
        self.say("starting HAProxy")
        state.haproxy_pid = balancer.start(p)
        self._save(state)
        self._wait_haproxy(shape)
        self.say("starting Prometheus (scrapes HAProxy's exporter and the hosts every second)")
        state.prometheus_pid = metrics.start(p, specs)
        self._save(state)
        metrics.wait_ready(p)

    def _lower(self) -> str:
        """The overlay lower dirs of every host: lab layer on top of the base image."""
        base = image.ensure_base(self.paths, self.say)
        debs = packages.ensure_debs(self.paths)
        layer = image.ensure_layer(
            self.paths, base, packages.initial_debs(debs), packages.debs_key(), self.say
        )
        return f"{layer}:{base}"

    def _security(self) -> Path:
        """The cached real security updates of the base image (fetched once with apt)."""
        return security.ensure_security_debs(
            self.paths, image.ensure_base(self.paths, self.say), self.say
        )

    def security_updates(self) -> list[security.PendingUpdate]:
        """What the lab's bookworm-security suite offers over the image (name, installed,
        candidate), as fetched from Debian."""
        return security.pending(self._security())

    def _security_count(self) -> int | None:
        folder = self.paths.cache / f"security-{security.security_key(Path(f'base-{image.base_key()}'))}"
        return len(security.pending(folder)) if (folder / ".complete").exists() else None

    def _keys(self, specs: Sequence[HostSpec]) -> None:
        """The lab's client key and each host's host key (made once, kept across ups)."""
        keydir = self.paths.ssh / "hostkeys"
        keydir.mkdir(parents=True, exist_ok=True)
        wanted = [(self.paths.client_key, "bluegreen-lab-client")]
        wanted += [(keydir / spec.name, spec.name) for spec in specs]
        for key, comment in wanted:
            if not key.exists():
                run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", comment, "-f",
                     str(key)])

    def _start_repo(self) -> int:
        log = self.paths.logs / "repo.log"
        with open(log, "ab") as out:
            proc = subprocess.Popen(
                [sys.executable, "-m", "http.server", "--bind", self.paths.gateway,
                 "--directory", str(self.paths.repo), str(REPO_PORT)],
                stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        waits.wait(lambda: waits.tcp_open(self.paths.gateway, REPO_PORT), 10,
                   "the lab apt repository to listen", f"see {log}")
        return proc.pid

    def _wait_hosts(self, state: LabState, specs: Sequence[HostSpec]) -> None:
        def netns(spec: HostSpec) -> str | None:
            site = sites.site_of(state.sites, spec.service)
            return site.netns if site else None

        waits.wait_hosts(self.paths, state.pids, specs, netns)

    def _wait_haproxy(self, shape: LabShape) -> None:
        """Until the load balancer sees every host UP (nginx: every frontend answers)."""
        if shape.router == "nginx":
            nginx.wait_up(self.paths, shape.services)
        else:
            balancer.wait_up(self.paths, len(shape.services) * shape.hosts_per_side)

    def reload_haproxy(self) -> None:
        """Seamless reload (SIGUSR2 to the master): the config and map file are re-read."""
        import signal

        state = self.require()
        sites.require_none(state.sites, "reload_haproxy")
        os.kill(state.haproxy_pid, signal.SIGUSR2)
        time.sleep(0.5)
        self._wait_haproxy(state.shape)

    def restart_haproxy(self) -> None:
        """Stop HAProxy and start it again from its files (map file, server-state file)."""
        state = self.require()
        sites.require_none(state.sites, "restart_haproxy")
        kill_and_wait([state.haproxy_pid], timeout=10)
        self.paths.haproxy_socket.unlink(missing_ok=True)
        self.paths.haproxy_operator_socket.unlink(missing_ok=True)
        state.haproxy_pid = balancer.start(self.paths)
        self._save(state)
        self._wait_haproxy(state.shape)

    def reload_nginx(self) -> None:
        """A graceful reload of the lab's nginx (SIGHUP to its master): config re-read."""
        state = self.require()
        nginx.reload(state.haproxy_pid)
        time.sleep(0.5)
        self._wait_haproxy(state.shape)

    def stop_repo(self) -> None:
        """Stop the lab apt repository server (a fault: "the repository is down")."""
        state = self.require()
        sites.require_none(state.sites, "stop_repo")
        kill_and_wait([state.repo_pid], timeout=10)

    def start_repo(self) -> None:
        """Start the lab apt repository server again (no-op when it is running)."""
        state = self.require()
        sites.require_none(state.sites, "start_repo")
        if alive(state.repo_pid):
            return
        state.repo_pid = self._start_repo()
        self._save(state)

    # ---- down ----------------------------------------------------------------------------
    def down(self) -> dict[str, Any]:
        """Remove everything the lab made. Works after a crashed or half-finished `up`."""
        started = time.monotonic()
        root = self.paths.root
        ours = _lab_processes(root) + sites.processes(self.paths)  # + its sites' workers
        kill_and_wait(ours, timeout=15)
        ours += [p for p in _lab_processes(root) + sites.processes(self.paths) if p not in ours]
        kill_and_wait(ours, timeout=5)
        stuck = hosts.unmount_under(root)
        net.remove_all(self.paths)
        loaded = self._load_quiet() or LabState(LabShape(), [])
        state_names = [h.name for h in loaded.hosts]
        from orchestrator.lab.database import drop_own_database

        left_db = drop_own_database(self.paths, loaded.shape.state_url)
        for name in state_names:
            shutil.rmtree(
                f"/run/systemd/nspawn/propagate/{hosts.machine_name(self.paths, name)}",
                ignore_errors=True,
            )
            hosts.remove_cgroups(self.paths, name)
        if not stuck:
            shutil.rmtree(root, ignore_errors=True)
        left = [f"mount {m}" for m in stuck] + net.leftovers(self.paths)
        left += [f"process {pid}" for pid in _lab_processes(root)]
        left += left_db
        return {
            "seconds": round(time.monotonic() - started, 2),
            "killed": len(ours),
            "leftovers": left,
        }

    def _load_quiet(self) -> LabState | None:
        try:
            return self.load()
        except LabError:
            return None

    # ---- faults and fresh hosts ----------------------------------------------------------
    def _fault_target(self, name: str) -> tuple[LabState, faults.FaultTarget]:
        state, spec = self.host(name)
        root = hosts.host_dir(self.paths, name) / "root"
        site = sites.site_of(state.sites, spec.service)
        return state, faults.FaultTarget(self.paths, name, spec.index, state.pids[name], root,
                                         site.netns if site else None)

    def fault(self, name: str, kind: str) -> None:
        faults.check_kind(kind)
        state, target = self._fault_target(name)
        faults.inject(kind, target)
        active = state.faults.setdefault(name, [])
        if kind not in active:
            active.append(kind)
        self._save(state)

    def heal(self, name: str) -> list[str]:
        state, target = self._fault_target(name)
        undone = list(reversed(state.faults.get(name, [])))
        for kind in undone:
            faults.undo(kind, target)
        state.faults.pop(name, None)
        self._save(state)
        return undone

    def reset(self, names: Sequence[str] | None = None) -> None:
        """Give hosts a fresh root (back to the image) and the router back to blue."""
        state, targets = self._fresh_roots(names)
        if state.shape.router == "nginx":
            nginx.reset_live(self.paths, state.shape.services, state.haproxy_pid)
        else:
            back = {h.service for h in targets} if names is not None else state.shape.services
            for paths, served in ([(sites.site_paths(self.paths, s), s.services)
                                   for s in state.sites]
                                  or [(self.paths, list(state.shape.services))]):
                balancer.route_back_to_blue(paths, [s for s in served if s in back], served)
        sites.wait_balancers(self.paths, state.sites, state.hosts) if state.sites \
            else self._wait_haproxy(state.shape)
        self._forget_reimaged(targets, reset_all=names is None)

    def reimage(self, names: Sequence[str]) -> None:
        """Give the named hosts a fresh root (back to the image) and nothing else: traffic
        and every state store stay as they are (the lab's re-imaging for `bluegreen
        rebuild`, playbooks/lab-rebuild.yml)."""
        state = self.require()
        unknown = sorted(set(names) - {h.name for h in state.hosts})
        if not names or unknown:
            raise BadInput(f"lab reimage: unknown or no host names: {unknown or 'none given'}",
                           hint="name lab hosts (`bluegreen lab status`)")
        self._fresh_roots(names)

    def _fresh_roots(self, names: Sequence[str] | None) -> tuple[LabState, list[HostSpec]]:
        state = self.require()
        targets = [h for h in state.hosts if names is None or h.name in names]
        for spec in targets:
            if state.faults.get(spec.name):
                self.heal(spec.name)
        state = self.require()
        for spec in targets:
            hosts.stop(state.pids[spec.name])
        for spec in targets:
            pid = state.pids[spec.name]
            waits.wait(partial(waits.dead, pid), 20, f"{spec.name} to stop", "")
            hdir = hosts.host_dir(self.paths, spec.name)
            hosts.unmount_under(hdir)
            hosts.remove_cgroups(self.paths, spec.name)
        lower = self._lower()
        pub = self.paths.client_key.with_suffix(".pub").read_text()
        for spec in targets:
            hosts.prepare_root(
                self.paths, spec, lower, self.paths.ssh / "hostkeys" / spec.name, pub
            )
            state.pids[spec.name] = hosts.boot(self.paths, spec)
        self._save(state)
        self._wait_hosts(state, targets)
        return state, targets

    def _forget_reimaged(self, targets: Sequence[HostSpec], *, reset_all: bool) -> None:
        state = self.load()
        forget_reimaged(self.paths, state.shape.state_url if state is not None else None,
                        targets, reset_all=reset_all)
