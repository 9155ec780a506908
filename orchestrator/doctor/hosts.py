"""The hosts as bluegreen reaches them, checked the two ways it connects:

- `ssh HOST`: paramiko with strict host keys, as the probes, drift and the security
  fingerprint connect (`probes.connection`);
- `ansible-ssh HOST`: OpenSSH with the options Ansible's ssh gets for the patch and the
  package reads (`patching.ssh.strict_options`: ssh_config, known_hosts, BatchMode);
- `sudo HOST` (with `ssh.become`): `sudo -n -- sh -c 'id -u'` is 0, as the probes and
  Ansible's become escalate (a sudoers entry for `true` alone does not pass);
- `root HOST`: what the patch and the security fingerprint need: the user is root, or
  becomes root.

Host keys are looked up by the address bluegreen connects to (`ansible_host`, else the
inventory name), as `[address]:port` when the port is not 22: a failure names that entry.
"""

from __future__ import annotations

import dataclasses
import shutil
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor

from orchestrator.config.loaded import LoadedConfig
from orchestrator.doctor.report import Check
from orchestrator.inventory import Host
from orchestrator.patching.ssh import Masters, Output, control_dir
from orchestrator.probes.base import ProbeTarget
from orchestrator.probes.connection import ProbeConnectionError, SSHConnection
from orchestrator.probes.gate import targets_for
from orchestrator.processes import as_root

_COMMAND_TIMEOUT = 10.0


def _where(t: ProbeTarget) -> str:
    port = "" if t.port == 22 else f", port {t.port}"
    return (f"known_hosts entry `{t.known_hosts_name}` in {t.known_hosts} (looked up by the "
            f"connect address {t.address}{port})")


def fix_for(reason: str, t: ProbeTarget) -> str:
    """The fix line for an SSH failure of `reason` (ProbeConnectionError.reason, or
    "host-key-changed")."""
    port = "" if t.port == 22 else f"-p {t.port} "
    if reason == "host-key":
        return (f"add the host's key: `ssh-keyscan {port}{t.address} >> {t.known_hosts}` "
                "(compare the fingerprint with the host's own first); the entry is looked up "
                "by the connect address (ansible_host), not the inventory name")
    if reason == "host-key-changed":
        return (f"check that {t.name} really has a new key, then replace the "
                f"`{t.known_hosts_name}` line in {t.known_hosts}")
    if reason == "auth":
        return (f"authorize {t.key_file or 'the key'} for {t.user} on {t.name} "
                f"(~{t.user}/.ssh/authorized_keys), or fix ssh.user / ansible_user / "
                "ssh.private_key_file")
    if reason == "unreachable":
        return (f"check that {t.name} is up and {t.address}:{t.port} can be reached from "
                "here (ansible_host, ansible_port)")
    return f"connect by hand: ssh -p {t.port} {t.user}@{t.address}"


def _paramiko(target: ProbeTarget) -> list[Check]:
    """ssh, sudo and root over one probe connection (as the probes connect)."""
    plain = dataclasses.replace(target, become=False)  # sudo is what we test here
    name = target.name
    checks: list[Check] = []
    try:
        with SSHConnection(plain, attempts=1) as conn:
            checks.append(Check(f"ssh {name}", True, f"as the probes connect: "
                                f"{target.user}@{target.address}:{target.port}, known_hosts "
                                f"entry `{target.known_hosts_name}`"))
            rc, out, err = conn.run("id -un; id -u", _COMMAND_TIMEOUT)
            words = out.split()
            is_root = rc == 0 and words[-1:] == ["0"]
            sudo_ok = False
            if target.become:  # exactly how the probes escalate (Ansible: sudo -n sh -c)
                rc, out, err = conn.run(as_root("id -u"), _COMMAND_TIMEOUT)
                sudo_ok = rc == 0 and out.split() == ["0"]
                said = (err.strip() or out.strip() or f"exit {rc}")[-200:]
                checks.append(Check(
                    f"sudo {name}", sudo_ok,
                    f"`{as_root('id -u')}` as {target.user}: "
                    + ("uid 0" if sudo_ok else said),
                    "" if sudo_ok else
                    f"give {target.user} passwordless sudo on {name} (/etc/sudoers.d/"
                    f"{target.user}: `{target.user} ALL=(root) NOPASSWD: ALL`, requiretty off)"))
    except ProbeConnectionError as exc:
        changed = exc.reason == "host-key" and "mismatch" in exc.message
        detail = exc.message + ("" if exc.reason != "host-key" else f"; {_where(target)}")
        return [Check(f"ssh {name}", False, detail,
                      fix_for("host-key-changed" if changed else exc.reason, target))]
    except Exception as exc:  # noqa: BLE001 - a command that broke is this host's failure
        return [*checks, Check(f"ssh {name}", False, f"{type(exc).__name__}: {exc}",
                               fix_for("ssh", target))]
    user = words[0] if words else target.user
    if is_root:
        checks.append(Check(f"root {name}", True, f"connects as {user} (root)"))
    elif target.become:
        checks.append(Check(
            f"root {name}", sudo_ok,
            f"{user} becomes root with sudo -n" if sudo_ok else
            f"{user} is not root and cannot become root: the patch and the security "
            "fingerprint's sections authorized-key, sudoers, setuid, cron and listener would "
            "fail", "" if sudo_ok else f"fix sudo for {user} on {name} (see `sudo {name}`)"))
    else:
        checks.append(Check(
            f"root {name}", False,
            f"connects as {user}, not root, and ssh.become is off: the patch and the security "
            "fingerprint's sections authorized-key, sudoers, setuid, cron and listener "
            "need root", f"set ssh.become: true (with passwordless sudo for {user}), or "
            "connect as root"))
    return checks


def _openssh_reason(out: Output) -> str:
    text = (out.stderr or out.error or "").lower()
    if "identification has changed" in text:
        return "host-key-changed"
    if "host key" in text and ("verification failed" in text or "is known" in text):
        return "host-key"
    if "permission denied" in text:
        return "auth"
    if any(w in text for w in ("refused", "timed out", "no route", "resolve", "no answer")):
        return "unreachable"
    return "ssh"


def _openssh(config: LoadedConfig, hosts: Sequence[Host],
             targets: dict[str, ProbeTarget], timeout: float) -> list[Check]:
    run_dir = control_dir()
    masters = Masters(config, hosts, run_dir / "cp", timeout=timeout)
    masters.become = False  # the connection alone: sudo is `sudo HOST`'s
    try:
        (run_dir / "cp").mkdir(mode=0o700)
        outputs = masters.run("true", timeout + _COMMAND_TIMEOUT)
    finally:
        masters.close()
        shutil.rmtree(run_dir, ignore_errors=True)
    checks = []
    for host in hosts:
        out, target = outputs[host.name], targets[host.name]
        name = f"ansible-ssh {host.name}"
        if out.error is None and out.rc == 0:
            checks.append(Check(name, True, f"as Ansible connects (OpenSSH): {host.user}@"
                                f"{host.address}:{host.port}, known_hosts entry "
                                f"`{target.known_hosts_name}`"))
            continue
        said = " ".join((out.error or out.stderr or f"exit {out.rc}").split())[-300:]
        reason = _openssh_reason(out)
        where = f"; {_where(target)}" if reason.startswith("host-key") else ""
        checks.append(Check(name, False, f"ssh (Ansible's options) failed: {said}{where}",
                            fix_for(reason, target)))
    return checks


def host_checks(config: LoadedConfig, hosts: Sequence[Host]) -> list[Check]:
    """Every check of the module docstring for each of `hosts`, all hosts at once; per
    host in the order ssh, ansible-ssh, sudo, root."""
    if not hosts:
        return []
    targets = {t.name: t for t in targets_for(config, hosts)}
    timeout = config.model.ssh.connect_timeout
    with ThreadPoolExecutor(max_workers=min(32, len(hosts) + 1)) as pool:
        openssh = pool.submit(_openssh, config, hosts, targets, timeout)
        probes = list(pool.map(lambda h: _paramiko(targets[h.name]), hosts))
        ansible = {c.name.removeprefix("ansible-ssh "): c for c in openssh.result()}
    checks: list[Check] = []
    for host, found in zip(hosts, probes, strict=True):
        checks += [found[0], ansible[host.name], *found[1:]]
    return checks
