"""The security part of a host's fingerprint: what an intruder (or a careless probe) changes.

Each kind is one section of drift's single fingerprint command (`probes.drift`), read as
root over the run's strict SSH connection (as `ssh.user`, or through `sudo -n` with
`ssh.become`; a section only root can read fails, naming the user, when read as another:
never an empty section), and parsed here into `key -> value`:

  authorized-key  `USER SHA256:...` -> key type and size, for every user's
                  ~/.ssh/authorized_keys(2) (fingerprints via `ssh-keygen -l`, never the key
                  bodies), and `USER file PATH` -> sha256 of the file (options such as
                  `command=` change no fingerprint but do change the file)
  user, group     `getent passwd` / `getent group`: ids, home, shell, members
  sudoers         sha256 of /etc/sudoers and the files in /etc/sudoers.d
  setuid          setuid/setgid files on the root filesystem: mode, owner, sha256 and the
                  package that owns the file (absent for a file no package owns)
  cron            sha256 of /etc/crontab, /etc/anacrontab and the files in /etc/cron.d,
                  /etc/cron.{hourly,daily,weekly,monthly}, /var/spool/cron/crontabs
  timer           systemd timers loaded (transient ones too) and their state
  kernel-module   /proc/modules (a container such as the lab's hosts has none: one entry
                  `(not visible)` says so)
  listener        TCP listening ports and UDP ports below 32768, with the owning executables
  sshd-config     sha256 of /etc/ssh/sshd_config and the files in /etc/ssh/sshd_config.d
  pam             sha256 of the files in /etc/pam.d
(the files in a directory: dotfiles too, symlinks followed)

Normalized so that mirrored hosts (and the two sides) are equal when nothing is wrong:
no host keys, machine ids, boot ids, PIDs, addresses or ephemeral UDP ports are part of it
(`probes.identity` binds a verification to its hosts with those instead), and an executable
replaced on disk (" (deleted)") counts as the same path (`stale-processes` reports that).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from orchestrator.probes.drift import Difference

SECURITY_KINDS: tuple[str, ...] = (
    "authorized-key", "user", "group", "sudoers", "setuid", "cron", "timer",
    "kernel-module", "listener", "sshd-config", "pam",
)
# UDP ports at and above the ephemeral range are clients' sockets (they differ per host).
EPHEMERAL_UDP = 32768


def _hashes(paths: str) -> str:
    """sha256 of each of `paths` that is a file, and of the files directly in each that is a
    directory (symlinks followed, dotfiles too), with one `sha256sum` (each process costs on
    a loaded host). Missing paths print nothing."""
    return f"find -L {paths} -maxdepth 1 -type f -exec sha256sum {{}} + 2>/dev/null; true"


_AUTHORIZED_KEYS = (
    "getent passwd | while IFS=: read -r u _ _ _ _ home _; do"
    ' for f in "$home/.ssh/authorized_keys" "$home/.ssh/authorized_keys2"; do'
    ' [ -f "$f" ] || continue;'
    ' printf \'%s\\tfile\\t%s\\t%s\\n\' "$u" "$f" "$(sha256sum < "$f" | cut -d" " -f1)";'
    ' ssh-keygen -l -f "$f" 2>/dev/null | while read -r bits fp rest; do'
    ' printf \'%s\\tkey\\t%s\\t%s %s\\n\' "$u" "$fp" "${rest##*(}" "$bits"; done;'
    " done; done"
)
# find's rc is 1 when a file vanishes under it (/tmp): the listing is still what we want.
# Each file's owning package (one grep over dpkg's file lists; usrmerge: dpkg knows
# /sbin/unix_chkpwd for /usr/sbin/unix_chkpwd) ends the value: a security update replaces
# packaged setuid files, and drift lets their content differ only with their package's
# version (`setuid_explained_by_patch`). One walk, one grep, one sha256sum and one awk that
# joins them (a process per file costs ~20 ms on a loaded host).
_SETUID = (
    r"s=$(find / -xdev -type f -perm /6000 -printf '%m\t%u:%g\t%p\n' 2>/dev/null);"
    r""" [ -z "$s" ] || { printf '%s\n' "$s" | sed 's/^/M\t/';"""
    r""" printf '%s\n' "$s" | cut -f3 | sed 'p; s|^/usr/|/|' |"""
    r" grep -H -x -F -f - /var/lib/dpkg/info/*.list 2>/dev/null | sed 's/^/P\t/';"
    r""" printf '%s\n' "$s" | cut -f3 | tr '\n' '\0' | xargs -0 -r sha256sum |"""
    r" sed 's/^/H\t/'; } | awk -F '\t'"
    r""" '$1 == "M" {m[$4] = $2 " " $3}"""
    r""" $1 == "P" {i = index($2, ".list:"); if (i) {x = substr($2, 1, i - 1);"""
    r""" sub(/.*\//, "", x); sub(/:.*/, "", x); f = substr($2, i + 6); if (!(f in o)) o[f] = x}}"""
    r""" $1 == "H" {h[substr($2, 67)] = substr($2, 1, 64)}"""
    r""" END {for (p in m) {q = p; if (substr(p, 1, 5) == "/usr/") q = substr(p, 5);"""
    r""" n = (p in o) ? o[p] : ((q in o) ? o[q] : "");"""
    r""" print p "\t" m[p] " " h[p] (n == "" ? "" : " " n)}}'"""
)
_LISTENER = (
    "ss -Htlnp | sed 's/^/tcp /'; ss -Hulnp | sed 's/^/udp /';"
    " for p in $(ss -Htulnp | grep -o 'pid=[0-9]*' | cut -d= -f2 | sort -u); do"
    ' echo "exe $p $(readlink /proc/$p/exe)"; done'
)

NEEDS_ROOT = "needs root"
"""Printed (and rc 1) by a section that only root can read in full, read as another user."""


def _root_only(command: str) -> str:
    """`command`, or, when not run as root, a failure naming the user: another user reads
    no other home's authorized_keys, no sudoers, no crontab spool, no listener's owner, and
    a `2>/dev/null` would make that an empty section (a silent pass)."""
    return (
        'if [ "$(id -u)" != 0 ]; then'
        f' echo "{NEEDS_ROOT}: read as $(id -un) (uid $(id -u)): connect as root, or set'
        ' ssh.become: true with passwordless sudo for that user"; false;'
        f" else {command}; fi"
    )


SECTIONS: tuple[tuple[str, str], ...] = (
    ("authorized-key", _root_only(_AUTHORIZED_KEYS)),
    ("user", "getent passwd"),
    ("group", "getent group"),
    ("sudoers", _root_only(_hashes("/etc/sudoers /etc/sudoers.d"))),
    ("setuid", _root_only(_SETUID)),
    ("cron", _root_only(_hashes("/etc/crontab /etc/anacrontab /etc/cron.d /etc/cron.hourly"
                                " /etc/cron.daily /etc/cron.weekly /etc/cron.monthly"
                                " /var/spool/cron/crontabs"))),
    ("timer", "systemctl list-units --all --type=timer --no-legend --no-pager --plain"),
    # systemd-nspawn (the lab) hides /proc/modules: the kernel is the machine's, not the host's
    ("kernel-module", "if [ -e /proc/modules ]; then cat /proc/modules;"
                      " else echo '(not visible) no /proc/modules: a container'; fi"),
    ("listener", _root_only(_LISTENER)),
    ("sshd-config", _hashes("/etc/ssh/sshd_config /etc/ssh/sshd_config.d")),
    ("pam", _hashes("/etc/pam.d")),
)


def parse_section(kind: str, lines: Iterable[str]) -> dict[str, str]:
    """One section's output as `key -> value` (see the module docstring)."""
    lines = [line for line in lines if line.strip()]
    if kind == "listener":
        return _listeners(lines)
    out: dict[str, str] = {}
    for line in lines:
        if kind == "authorized-key":
            user, what, name, value = (line.split("\t") + ["", "", ""])[:4]
            if what == "key":
                out[f"{user} {name}"] = value.replace(")", "").strip()  # "ED25519 256"
            elif what == "file":
                out[f"{user} file {name}"] = value
        elif kind == "user":
            f = line.split(":")
            if len(f) >= 7:
                out[f[0]] = f"uid={f[2]} gid={f[3]} home={f[5]} shell={f[6]}"
        elif kind == "group":
            f = line.split(":")
            if len(f) >= 4:
                out[f[0]] = f"gid={f[2]} members={f[3]}"
        elif kind == "setuid":
            path, _, value = line.partition("\t")
            out[path] = value
        elif kind == "timer":
            parts = line.split()
            if len(parts) >= 3:
                out[parts[0]] = f"{parts[1]} {parts[2]}"
        elif kind == "kernel-module":
            if line.startswith("(not visible)"):
                out["(not visible)"] = line.partition(") ")[2]
            else:
                out[line.split()[0]] = "loaded"
        else:  # sha256sum lines
            digest, _, path = line.partition("  ")
            if path:
                out[path.strip()] = digest.strip()
    return out


def _listeners(lines: Sequence[str]) -> dict[str, str]:
    exes: dict[str, str] = {}
    sockets: list[tuple[str, list[str]]] = []
    for line in lines:
        parts = line.split()
        if parts[0] == "exe" and len(parts) >= 2:
            exes[parts[1]] = parts[2] if len(parts) > 2 else "?"
        elif parts[0] in ("tcp", "udp") and len(parts) >= 5:
            _, _, port = parts[4].rpartition(":")
            if not port.isdigit() or (parts[0] == "udp" and int(port) >= EPHEMERAL_UDP):
                continue
            sockets.append((f"{parts[0]}/{port}", re.findall(r"pid=(\d+)", line)))
    owners: dict[str, set[str]] = {}
    for key, pids in sockets:
        found = owners.setdefault(key, set())
        found.update(exes.get(p, "?").removesuffix(" (deleted)") for p in pids)
        if not pids:
            found.add("unknown owner")
    return {key: ",".join(sorted(found)) for key, found in owners.items()}


# ---------------------------------------------------------------------------------------
# Findings in words (pure)
# ---------------------------------------------------------------------------------------
_LABELS = {
    "setuid": "setuid/setgid file", "cron": "cron file", "timer": "timer",
    "kernel-module": "kernel module", "listener": "listener", "sshd-config": "sshd config",
    "pam": "PAM file", "sudoers": "sudoers file", "user": "user", "group": "group",
    "package": "package", "unit-enabled": "enabled unit", "unit-running": "running unit",
    "port": "port", "file": "file",
}


def setuid_explained_by_patch(
    expected: str, actual: str, versions_differ: Callable[[str], bool]
) -> bool:
    """A setuid file whose content alone differs (same mode, owner and owning package) is
    the patch's doing when that package's version differs and may differ
    (`versions_differ(package)`); an unpackaged file, or a changed mode or owner, never is."""
    want, have = expected.split(" "), actual.split(" ")
    if len(want) != 4 or len(have) != 4:
        return False
    same = want[0] == have[0] and want[1] == have[1] and want[3] == have[3]
    return same and want[2] != have[2] and versions_differ(want[3])


def short_value(value: str | None) -> str:
    if value is None:
        return "absent"
    return re.sub(r"\b[0-9a-f]{64}\b", lambda m: m.group(0)[:16], value)


def describe_changes(diffs: Sequence[Difference]) -> list[str]:
    """What changed on one host, in words: `authorized_keys of root +1 key (SHA256:...)`,
    `setuid/setgid file /tmp/x added`, `user eve added (uid=...)`, `sudoers file ... changed`.
    `expected` is the value before (or approved), `actual` the value now."""
    out: list[str] = []
    keys: dict[str, tuple[list[str], list[str]]] = {}
    for d in diffs:
        if d.kind == "authorized-key":
            user, _, rest = d.key.partition(" ")
            if rest.startswith("file "):
                continue  # the keys themselves say it; the hash alone when only options changed
            added, removed = keys.setdefault(user, ([], []))
            (added if d.expected is None else removed if d.actual is None else added).append(rest)
            continue
        label = _LABELS.get(d.kind, d.kind)
        if d.expected is None:
            out.append(f"{label} {d.key} added ({short_value(d.actual)})")
        elif d.actual is None:
            out.append(f"{label} {d.key} removed (was {short_value(d.expected)})")
        else:
            out.append(f"{label} {d.key} changed: {short_value(d.actual)}, "
                       f"expected {short_value(d.expected)}")
    for user, (added, removed) in sorted(keys.items()):
        parts = [f"+{len(added)} key{'s' * (len(added) != 1)} ({', '.join(added)})"] if added else []
        if removed:
            parts.append(f"-{len(removed)} key{'s' * (len(removed) != 1)} ({', '.join(removed)})")
        out.insert(0, f"authorized_keys of {user} " + " ".join(parts))
    out += [f"authorized_keys file {d.key.split(' file ', 1)[1]} of {user} changed "
            "(key options or lines that are not keys)"
            for d in diffs if d.kind == "authorized-key" and " file " in d.key
            and (user := d.key.partition(" ")[0]) not in keys]
    return out


def diff_items(
    host: str,
    before: Mapping[str, Mapping[str, str]],
    after: Mapping[str, Mapping[str, str]],
    against: str,
) -> list[Difference]:
    """Every (kind, key) whose value differs between two fingerprints of one host."""
    from orchestrator.probes.drift import Difference

    diffs: list[Difference] = []
    for kind in sorted(set(before) | set(after)):
        old, new = before.get(kind, {}), after.get(kind, {})
        for key in sorted(set(old) | set(new)):
            if old.get(key) != new.get(key):
                diffs.append(Difference(host, kind, key, old.get(key), new.get(key), against))
    return diffs
