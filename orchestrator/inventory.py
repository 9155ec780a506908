"""Ansible inventory -> services, sides and hosts, read with Ansible's own parser.

Any inventory Ansible reads works: YAML, INI, a directory of them, group_vars/host_vars,
inventory plugins. Ansible is imported lazily inside `load_fleet()` so importing this module
stays cheap (the rollback fast path never parses an inventory).

What comes back is plain, typed and frozen: `Fleet -> ServiceHosts -> Host`. Secrets never
leave this module: variables whose name looks secret, vault-encrypted values and
vault-encrypted files are dropped (never decrypted), so plans, reports and the journal can
carry `Host.vars` safely.
"""

from __future__ import annotations

import contextlib
import difflib
import io
import os
import re
import threading
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from orchestrator.config.loaded import LoadedConfig
from orchestrator.errors import BadInput
from orchestrator.secrets import is_secret_key as is_secret_key  # the one redaction policy
from orchestrator.secrets import remember_secret_values
from orchestrator.sides import SIDES, Side
from orchestrator.trust import check_trusted_ansible

#: Ansible prints warnings straight to sys.stdout/sys.stderr, so parsing swaps both for a
#: buffer, which is process-wide. Hold this lock while they are swapped, and while a worker
#: thread writes to the terminal (a campaign wave patches services in parallel): otherwise
#: one thread restores another's buffer as "the real stdout", or its output lands in it.
OUTPUT_LOCK = threading.RLock()


@contextlib.contextmanager
def captured_output() -> Iterator[io.StringIO]:
    """Everything printed inside (Ansible's warnings) goes to the returned buffer."""
    captured = io.StringIO()
    with OUTPUT_LOCK, contextlib.redirect_stderr(captured), contextlib.redirect_stdout(captured):
        yield captured

__all__ = ["Fleet", "Host", "ServiceHosts", "is_secret_key", "load_fleet"]

# never a leading '-': the value goes on ssh's command line, where it would be an option
_SAFE_HOST_RE = re.compile(r"^[A-Za-z0-9._:][A-Za-z0-9._:-]{0,252}$")
_SAFE_USER_RE = re.compile(r"^[A-Za-z0-9._@][A-Za-z0-9._@-]{0,63}$")
# Variables Ansible adds to every host (not from the inventory); never part of Host.vars.
_MAGIC_VARS = frozenset(
    {
        "ansible_check_mode",
        "ansible_config_file",
        "ansible_dependent_role_names",
        "ansible_diff_mode",
        "ansible_facts",
        "ansible_forks",
        "ansible_inventory_sources",
        "ansible_limit",
        "ansible_play_batch",
        "ansible_play_hosts",
        "ansible_play_hosts_all",
        "ansible_play_name",
        "ansible_play_role_names",
        "ansible_playbook_python",
        "ansible_role_names",
        "ansible_run_tags",
        "ansible_skip_tags",
        "ansible_verbosity",
        "ansible_version",
        "environment",
        "group_names",
        "groups",
        "hostvars",
        "inventory_dir",
        "inventory_file",
        "inventory_hostname",
        "inventory_hostname_short",
        "omit",
        "play_hosts",
        "playbook_dir",
        "role_names",
        "vars",
    }
)
_GROUPS_SHOWN = 30


@dataclass(frozen=True)
class Host:
    """One machine as bluegreen reaches it. `vars` holds no secrets."""

    name: str
    address: str
    port: int = 22
    user: str = "root"
    vars: Mapping[str, Any] = field(default_factory=dict, hash=False)
    key_file: str | None = None
    """ansible_ssh_private_key_file (~ expanded): the path, never the key; not in `vars`."""


@dataclass(frozen=True)
class ServiceHosts:
    """The two mirrored pools of one service."""

    service: str
    blue: tuple[Host, ...]
    green: tuple[Host, ...]

    def side(self, side: Side) -> tuple[Host, ...]:
        if side == "blue":
            return self.blue
        if side == "green":
            return self.green
        raise ValueError(f"unknown side {side!r}; expected one of {SIDES}")


@dataclass(frozen=True)
class Fleet:
    """Every service of the inventory it was read from (`LoadedConfig.inventory_services`),
    with its hosts per side."""

    services: Mapping[str, ServiceHosts]
    groups: Mapping[str, frozenset[str]] = field(default_factory=dict)
    """Each inventory group -> itself and every group below it (`children:`, nested)."""

    def service(self, name: str) -> ServiceHosts:
        try:
            return self.services[name]
        except KeyError:
            raise BadInput(
                f"no service {name!r} in the fleet",
                hint=f"use one of: {', '.join(sorted(self.services))}",
            ) from None


# --------------------------------------------------------------------------- loading


def load_fleet(config: LoadedConfig) -> Fleet:
    """Parse the config's inventory with Ansible and map each service's sides to hosts.

    Raises `BadInput` naming the inventory (and the config field) with a fix for: a missing
    or unparsable inventory, a side group that does not exist or has no hosts, a host in both
    sides of a service, unsafe host names/addresses/users, and an out-of-range ansible_port.
    Prints nothing: Ansible's warnings are captured and folded into the error when it fails.
    """
    inv_path = config.inventory_path
    inv_name = str(inv_path)
    if not inv_path.exists():
        raise BadInput(
            f"{inv_name}: inventory not found (from `inventory:` in {config.path})",
            hint="set `inventory:` to an Ansible inventory file or directory; a relative path"
            " is taken from the config file's directory",
        )

    check_trusted_ansible(inv_path, "inventory")  # code: see orchestrator.trust
    # Ansible prints warnings to stdout/stderr; this module prints nothing.
    with captured_output() as captured:
        return _build(config, inv_path, captured)


def inventory_groups(inv_path: Path) -> dict[str, int]:
    """Every group of the inventory at `inv_path` (read as `load_fleet` reads it) -> how many
    hosts it holds (`bluegreen init` pairs `*_blue` with `*_green`). BadInput as load_fleet."""
    if not inv_path.exists():
        raise BadInput(f"{inv_path}: inventory not found",
                       hint="give --inventory an Ansible inventory file or directory")
    check_trusted_ansible(inv_path, "inventory")  # code: see orchestrator.trust
    with captured_output() as captured:
        inventory = _parse(inv_path, captured)[0]
    return {name: len(group.get_hosts()) for name, group in inventory.groups.items()
            if name not in ("all", "ungrouped")}


def _build(config: LoadedConfig, inv_path: Path, captured: io.StringIO) -> Fleet:
    inv_name = str(inv_path)
    inventory, variables, templar_cls, loader = _parse(inv_path, captured)
    groups = inventory.groups
    user_default = config.model.ssh.user

    built: dict[str, Host] = {}
    services: dict[str, ServiceHosts] = {}
    for svc_name in config.inventory_services:  # a site with its own inventory: not here
        svc = config.model.services[svc_name]
        pools: dict[str, tuple[Host, ...]] = {}
        for side in SIDES:
            group_name: str = getattr(svc.sides, side)
            fld = f"services.{svc_name}.sides.{side}"
            group = groups.get(group_name)
            if group is None:
                raise BadInput(
                    f"{inv_name}: group {group_name!r} (from {fld} in {config.path.name}) is not"
                    f" in the inventory{_suggest(group_name, groups)}",
                    hint=f"add the group to the inventory or set {fld} to an existing group;"
                    f" groups: {_list_groups(groups)}",
                )
            hosts = []
            for ans_host in group.get_hosts():
                host = built.get(ans_host.name)
                if host is None:
                    host = _make_host(
                        ans_host, variables, templar_cls, loader, user_default, inv_name
                    )
                    built[ans_host.name] = host
                hosts.append(host)
            if not hosts:
                raise BadInput(
                    f"{inv_name}: group {group_name!r} ({side} side of service {svc_name!r},"
                    f" {fld}) has no hosts",
                    hint=f"add the {side} hosts of {svc_name!r} under {group_name!r} in the"
                    " inventory",
                )
            pools[side] = tuple(hosts)
        _check_disjoint(svc_name, svc.sides.blue, svc.sides.green, pools, inv_name)
        services[svc_name] = ServiceHosts(
            service=svc_name, blue=pools["blue"], green=pools["green"]
        )
    within = {g.name: frozenset({g.name} | {d.name for d in g.get_descendants()})
              for g in groups.values()}
    return Fleet(services=services, groups=within)


def _parse(inv_path: Path, captured: io.StringIO) -> tuple[Any, Any, Any, Any]:
    """Run Ansible's inventory parser; raise BadInput if any source did not parse.

    Called with stdout/stderr redirected into `captured` (Ansible prints its warnings).
    """
    from ansible.errors import AnsibleError
    from ansible.inventory.manager import IGNORED, InventoryManager
    from ansible.parsing.dataloader import DataLoader
    from ansible.parsing.vault import is_encrypted_file
    from ansible.template import Templar
    from ansible.vars.manager import VariableManager

    class _NoVaultLoader(DataLoader):  # type: ignore[misc]
        """Skips vault-encrypted files instead of failing: their contents are secrets
        bluegreen must not hold anyway, and it has no vault password."""

        def load_from_file(self, file_name: str, *args: Any, **kwargs: Any) -> Any:
            path = self.path_dwim(file_name)
            try:
                with open(path, "rb") as fh:
                    if is_encrypted_file(fh):
                        return {}
            except OSError:
                pass  # let Ansible report it
            return super().load_from_file(file_name, *args, **kwargs)

    name = str(inv_path)
    loader = _NoVaultLoader()
    try:
        inventory = InventoryManager(loader=loader, sources=[name])
        variables = VariableManager(loader=loader, inventory=inventory)
    except AnsibleError as exc:
        detail = _ansible_failure_detail(captured.getvalue(), name)
        raise BadInput(
            f"{name}: cannot read the inventory: {detail or _one_line(str(exc))}",
            hint=f"fix it so `ansible-inventory -i {name} --graph` reads it",
        ) from None

    processed = {os.path.abspath(p) for p in inventory._inventory.processed_sources if p}
    expected = _expected_sources(inv_path, IGNORED)
    failed = [p for p in expected if os.path.abspath(p) not in processed]
    if failed or not processed:
        what = failed[0] if failed else name
        detail = _ansible_failure_detail(captured.getvalue(), what)
        raise BadInput(
            f"{what}: not a valid Ansible inventory{(': ' + detail) if detail else ''}",
            hint="fix the file so `ansible-inventory -i " + name + " --graph` reads it"
            " (YAML: groups with hosts:/children:/vars:, or INI: [group] sections)",
        )
    return inventory, variables, Templar, loader


def _expected_sources(path: Path, ignored: Any) -> list[str]:
    """The files Ansible tries to parse for `path` (same walk and ignore rules)."""
    if not path.is_dir():
        return [str(path)]
    found: list[str] = []
    for entry in sorted(os.listdir(path)):
        if ignored.search(os.fsencode(entry)):
            continue
        full = path / entry
        if full.is_dir():
            found.extend(_expected_sources(full, ignored))
        else:
            found.append(str(full))
    return found


def _ansible_failure_detail(text: str, source: str) -> str:
    """The most useful part of what Ansible warned while failing to parse `source`.

    Ansible prints one wrapped warning per plugin it tried; pick the plugin that matches the
    file's type (YAML or INI) and shorten a YAML syntax error to its problem and position.
    Ansible prints a given warning only once per process, so this may come back empty.
    """
    failures: dict[str, str] = {}
    for block in text.split("[WARNING]:"):
        flat = " ".join(block.split())
        m = re.match(r"\* Failed to parse (.+?) with ([\w.]+) plugin: (.*)$", flat)
        if m and os.path.abspath(m.group(1)) == os.path.abspath(source):
            failures.setdefault(m.group(2), m.group(3))
    if not failures:
        return ""
    is_yaml = source.endswith((".yml", ".yaml", ".json"))
    order = ("yaml", "auto", "ini") if is_yaml else ("ini", "yaml", "auto")
    detail = next((failures[p] for p in order if p in failures), next(iter(failures.values())))
    if "Syntax Error while loading YAML." in detail:
        problem = detail.split("Syntax Error while loading YAML.", 1)[1]
        problem = re.split(r" while parsing | in \"<unicode string>\"", problem)[0].strip()
        where = re.search(r"The error appears to be in '[^']*': (line \d+, column \d+)", detail)
        at = f" at {where.group(1)}" if where else ""
        return _one_line(f"YAML syntax error{at}: {problem}")
    return _one_line(detail)


def _one_line(text: str, limit: int = 300) -> str:
    flat = " ".join(text.replace("[WARNING]:", "").split())
    return flat if len(flat) <= limit else flat[: limit - 3] + "..."


def _make_host(
    ans_host: Any, variables: Any, templar_cls: Any, loader: Any, user_default: str, inv: str
) -> Host:
    name = str(ans_host.name)
    if not _SAFE_HOST_RE.match(name):
        raise BadInput(
            f"{inv}: host name {name!r} contains characters that are not allowed"
            " (only letters, digits, '.', '_', ':', '-'; no '-' first)",
            hint="rename the host, or give it a safe name and put the real address in ansible_host",
        )
    try:
        all_vars = variables.get_vars(host=ans_host, include_hostvars=False)
    except Exception as exc:  # Ansible raises many types here; all mean "bad vars"
        raise BadInput(
            f"{inv}: cannot read the variables of host {name!r}: {_one_line(str(exc))}",
            hint="check the host's group_vars/host_vars files with `ansible-inventory --host`",
        ) from None

    templar = templar_cls(loader=loader, variables=all_vars)

    def conn_var(*keys: str) -> Any:
        for key in keys:
            if key in all_vars and all_vars[key] is not None:
                value = all_vars[key]
                if isinstance(value, str) and ("{{" in value or "{%" in value):
                    try:
                        value = templar.template(value)
                    except Exception as exc:
                        raise BadInput(
                            f"{inv}: host {name!r}: {key}: cannot render {str(value)!r}:"
                            f" {_one_line(str(exc))}",
                            hint=f"give {key} a literal value for {name!r}",
                        ) from None
                return value
        return None

    address_raw = conn_var("ansible_host", "ansible_ssh_host")
    address = name if address_raw is None else str(address_raw)
    if not _SAFE_HOST_RE.match(address):
        raise BadInput(
            f"{inv}: host {name!r}: ansible_host {address!r} contains characters that are not"
            " allowed (only letters, digits, '.', '_', ':', '-'; no '-' first)",
            hint=f"set ansible_host of {name!r} to a plain hostname or IP address",
        )

    port = _port(conn_var("ansible_port", "ansible_ssh_port"), name, inv)

    user_raw = conn_var("ansible_user", "ansible_ssh_user", "ansible_ssh_user")
    user = user_default if user_raw is None else str(user_raw)
    if not _SAFE_USER_RE.match(user):
        raise BadInput(
            f"{inv}: host {name!r}: ansible_user {user!r} contains characters that are not"
            " allowed (only letters, digits, '.', '_', '@', '-'; no '-' first)",
            hint=f"set ansible_user of {name!r} to a plain login name",
        )

    key = conn_var("ansible_ssh_private_key_file", "ansible_private_key_file")
    key_file = None if key is None else os.path.expanduser(str(key))
    clean = {
        str(k): _plain(v)
        for k, v in all_vars.items()
        if str(k) not in _MAGIC_VARS and not is_secret_key(str(k)) and not _is_vaulted(v)
    }
    # the values left out are remembered, so that they are scrubbed wherever they turn up
    # (an Ansible message, a script's stderr): see orchestrator.secrets
    remember_secret_values(
        _plain_secret(v) for k, v in all_vars.items() if is_secret_key(str(k)) and not _is_vaulted(v)
    )
    return Host(name=name, address=address, port=port, user=user, vars=clean, key_file=key_file)


def _port(raw: Any, name: str, inv: str) -> int:
    if raw is None:
        return 22
    hint = f"set ansible_port of {name!r} to a number from 1 to 65535"
    if isinstance(raw, bool):
        raise BadInput(f"{inv}: host {name!r}: ansible_port {raw!r} is not a port", hint=hint)
    if isinstance(raw, int):
        port = raw
    else:
        text = str(raw).strip()
        if not text.isdigit():
            raise BadInput(f"{inv}: host {name!r}: ansible_port {raw!r} is not a number", hint=hint)
        port = int(text)
    if not 1 <= port <= 65535:
        raise BadInput(
            f"{inv}: host {name!r}: ansible_port {port} is out of range (1-65535)", hint=hint
        )
    return port


def _is_vaulted(value: Any) -> bool:
    return type(value).__name__ in ("AnsibleVaultEncryptedUnicode", "EncryptedString")


def _plain_secret(value: Any) -> Any:
    """A secret's value as plain data (strings, numbers, lists, maps) to remember."""
    if isinstance(value, Mapping):
        return {str(k): _plain_secret(v) for k, v in value.items() if not _is_vaulted(v)}
    if isinstance(value, list | tuple | set | frozenset):
        return [_plain_secret(v) for v in value if not _is_vaulted(v)]
    if isinstance(value, bool) or value is None:
        return None
    return str(value)


def _plain(value: Any) -> Any:
    """Ansible's YAML/unsafe wrapper types -> plain Python; nested secrets dropped."""
    if isinstance(value, bool) or value is None:
        return value
    if isinstance(value, str):
        return str(value)
    if isinstance(value, int):
        return int(value)
    if isinstance(value, float):
        return float(value)
    if isinstance(value, Mapping):
        remember_secret_values(
            _plain_secret(v) for k, v in value.items()
            if is_secret_key(str(k)) and not _is_vaulted(v)
        )
        return {
            str(k): _plain(v)
            for k, v in value.items()
            if not is_secret_key(str(k)) and not _is_vaulted(v)
        }
    if isinstance(value, list | tuple | set | frozenset):
        return [_plain(v) for v in value if not _is_vaulted(v)]
    return str(value)


def _check_disjoint(
    svc: str, blue_group: str, green_group: str, pools: dict[str, tuple[Host, ...]], inv: str
) -> None:
    blue_names = {h.name for h in pools["blue"]}
    both = [h.name for h in pools["green"] if h.name in blue_names]
    if both:
        raise BadInput(
            f"{inv}: host {both[0]!r} is in both sides of service {svc!r} (groups"
            f" {blue_group!r} and {green_group!r}): the mirror would be the same machine",
            hint=f"put each host of {svc!r} in exactly one of {blue_group!r} or {green_group!r}",
        )
    blue_addrs = {(h.address, h.port): h.name for h in pools["blue"]}
    for h in pools["green"]:
        other = blue_addrs.get((h.address, h.port))
        if other is not None:
            raise BadInput(
                f"{inv}: hosts {other!r} ({blue_group}) and {h.name!r} ({green_group}) of service"
                f" {svc!r} are the same machine ({h.address}:{h.port}): the mirror would be the"
                " same machine",
                hint="give each side its own hosts (check ansible_host/ansible_port)",
            )


def _suggest(name: str, groups: Mapping[str, Any]) -> str:
    close = difflib.get_close_matches(name, _user_groups(groups), n=1)
    return f" — did you mean {close[0]!r}?" if close else ""


def _user_groups(groups: Mapping[str, Any]) -> list[str]:
    return sorted(g for g in groups if g not in ("all", "ungrouped"))


def _list_groups(groups: Mapping[str, Any]) -> str:
    names = _user_groups(groups)
    if not names:
        return "(none)"
    shown = ", ".join(names[:_GROUPS_SHOWN])
    more = len(names) - _GROUPS_SHOWN
    return shown + (f", ... ({more} more)" if more > 0 else "")
