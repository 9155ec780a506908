"""`bluegreen init`: a first bluegreen.yml from an existing inventory and load balancer
config, the adapted load balancer config beside it, and the initial map file.

The inventory's `*_blue` / `*_green` group pairs (or the pairs given) become services; the
load balancer's config (HAProxy today, through its driver's adapter) gives the socket, the
map and server-state files, the frontends and which side routes today. Everything written
is validated first, and nothing is ever written over: an existing output file is an error
before any file is written.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from orchestrator.errors import BadInput
from orchestrator.inventory import inventory_groups

MAX_LB_CONFIG_BYTES = 4 * 1024 * 1024
SERVICE_RE = re.compile(r"^[a-z0-9][a-z0-9_-]{0,62}$")


@dataclass(frozen=True)
class InitRequest:
    inventory: Path
    output: Path
    haproxy_cfg: Path | None = None
    pairs: dict[str, tuple[str, str]] = field(default_factory=dict)
    """service -> (blue group, green group), from `--service`; empty: found by name."""
    known_hosts: str = "~/.ssh/known_hosts"
    ssh_user: str | None = None
    private_key_file: str | None = None
    map_file: str | None = None
    """Where HAProxy reads the map (default: bluegreen.map beside haproxy.cfg)."""


@dataclass(frozen=True)
class InitResult:
    config: Path
    written: list[Path]
    services: dict[str, dict[str, Any]]
    diff: str
    notes: list[str]
    map_file: str | None
    adapted_config: Path | None
    exposure_maps: tuple[str, ...] = ()
    """Where HAProxy reads the exposure maps (install the empty ones written there)."""

    def as_dict(self) -> dict[str, Any]:
        return {"config": str(self.config), "written": [str(p) for p in self.written],
                "services": self.services, "diff": self.diff, "notes": self.notes,
                "map_file": self.map_file, "exposure_maps": list(self.exposure_maps),
                "adapted_config": str(self.adapted_config) if self.adapted_config else None}


def parse_pair(text: str) -> tuple[str, tuple[str, str]]:
    """`NAME=BLUE_GROUP,GREEN_GROUP` -> (NAME, (BLUE_GROUP, GREEN_GROUP)); BadInput."""
    name, sep, groups = text.partition("=")
    blue, comma, green = groups.partition(",")
    if not sep or not comma or not name.strip() or not blue.strip() or not green.strip():
        raise BadInput(f"--service {text!r}: expected NAME=BLUE_GROUP,GREEN_GROUP",
                       hint="e.g. --service shop=shop_blue,shop_green")
    return name.strip(), (blue.strip(), green.strip())


def find_pairs(groups: dict[str, int]) -> dict[str, tuple[str, str]]:
    """Every `NAME_blue` with a `NAME_green` beside it."""
    return {g[: -len("_blue")]: (g, g[: -len("_blue")] + "_green")
            for g in sorted(groups)
            if g.endswith("_blue") and g[: -len("_blue")] + "_green" in groups}


def run_init(request: InitRequest) -> InitResult:
    """Write bluegreen.yml (+ haproxy.cfg.bluegreen and bluegreen.map) beside `output`.
    BadInput (nothing written) for an existing output, an unreadable or unfit inventory or
    load balancer config, or a config that would not validate."""
    directory = request.output.parent
    outputs = [request.output]
    if request.haproxy_cfg is not None:
        outputs += [directory / f"{request.haproxy_cfg.name}.bluegreen",
                    directory / "bluegreen.map",
                    directory / "bluegreen.percent.map", directory / "bluegreen.exposed.map"]
    for path in outputs:
        if path.exists() or path.is_symlink():
            raise BadInput(f"{path}: exists already; init never writes over a file",
                           hint="move it away, or give -o a path in another directory")
    pairs = _pairs(request)
    doc: dict[str, Any] = {
        "version": 1,
        "inventory": _relative(request.inventory, directory),
        "ssh": {"known_hosts": request.known_hosts,
                **({"user": request.ssh_user} if request.ssh_user else {}),
                **({"private_key_file": request.private_key_file}
                   if request.private_key_file else {})},
        "router": {},
        "services": {
            name: {"sides": {"blue": blue, "green": green},
                   "patch": {"security_updates": True}}
            for name, (blue, green) in pairs.items()
        },
    }
    files: dict[Path, str] = {}
    diff, notes, map_file = "", [], None
    services: dict[str, dict[str, Any]] = {
        name: {"blue": blue, "green": green, "live": None, "frontend": None}
        for name, (blue, green) in pairs.items()}
    if request.haproxy_cfg is None:
        raise BadInput("init needs the load balancer's config: --haproxy-cfg FILE",
                       hint="give the haproxy.cfg your load balancer runs (it is read, never "
                       "changed; the adapted copy is written beside bluegreen.yml)")
    adapted = _adapt_haproxy(request, pairs)
    map_file = adapted.map_file
    doc["router"] = {
        "kind": "haproxy", "socket": f"unix://{adapted.socket}", "map_file": adapted.map_file,
        "server_state_file": adapted.server_state_file,
        "frontends": {s: r.url for s, r in adapted.routes.items() if r.url},
    }
    for name, route in adapted.routes.items():
        services[name].update(live=route.live_backend.rsplit("_", 1)[-1],
                              frontend=route.frontend)
    files[outputs[1]] = adapted.text
    files[outputs[2]] = "\n".join(adapted.map_lines) + "\n"
    files[outputs[3]] = files[outputs[4]] = ""  # the exposure maps: no exposure
    diff, notes = adapted.diff, list(adapted.notes)
    notes.append("each service patches `security_updates: true`; add health checks "
                 "(`health:`) and `fixed_versions:` before the first rollout")
    files[request.output] = _validated_yaml(doc, request.output)
    for path, text in files.items():
        _write_new(path, text)
    return InitResult(config=request.output, written=list(files), services=services,
                      diff=diff, notes=notes, map_file=map_file,
                      exposure_maps=adapted.exposure_maps,
                      adapted_config=outputs[1] if len(outputs) > 1 else None)


def _pairs(request: InitRequest) -> dict[str, tuple[str, str]]:
    groups = inventory_groups(request.inventory)
    pairs = dict(request.pairs) or find_pairs(groups)
    if not pairs:
        raise BadInput(
            f"{request.inventory}: no group pairs NAME_blue / NAME_green (groups: "
            f"{', '.join(sorted(groups)) or 'none'})",
            hint="name the pairs: --service NAME=BLUE_GROUP,GREEN_GROUP (repeatable)")
    for name, (blue, green) in pairs.items():
        if not SERVICE_RE.match(name):
            raise BadInput(f"service name {name!r} is not usable",
                           hint="lower-case letters, digits, - and _ (e.g. --service "
                           "shop=shop_a,shop_b)")
        for group in (blue, green):
            if group not in groups:
                raise BadInput(f"{request.inventory}: group {group!r} (service {name}) is "
                               "not in the inventory",
                               hint=f"groups: {', '.join(sorted(groups))}")
            if not groups[group]:
                raise BadInput(f"{request.inventory}: group {group!r} (service {name}) has "
                               "no hosts", hint="add its hosts to the inventory")
    return pairs


def _adapt_haproxy(request: InitRequest, pairs: dict[str, tuple[str, str]]) -> Any:
    from orchestrator.routers.registry import config_adapter

    cfg = request.haproxy_cfg
    assert cfg is not None
    try:
        raw = cfg.read_bytes()[: MAX_LB_CONFIG_BYTES + 1]
    except OSError as exc:
        raise BadInput(f"{cfg}: cannot read it ({exc.strerror})",
                       hint="give --haproxy-cfg the file HAProxy runs with") from None
    if len(raw) > MAX_LB_CONFIG_BYTES:
        raise BadInput(f"{cfg}: larger than {MAX_LB_CONFIG_BYTES // 1024 // 1024} MiB",
                       hint="give --haproxy-cfg the HAProxy config file")
    try:
        text = raw.decode()
    except UnicodeDecodeError:
        raise BadInput(f"{cfg}: not UTF-8 text", hint="give --haproxy-cfg the config") from None
    map_file = request.map_file or str(cfg.resolve().parent / "bluegreen.map")
    backends = {name: (f"{name}_blue", f"{name}_green") for name in pairs}
    try:
        return config_adapter("haproxy")(text, backends, map_file=map_file,
                                         source_name=str(cfg))
    except ValueError as exc:
        raise BadInput(str(exc), hint="name the backends SERVICE_blue and SERVICE_green "
                       "(router.backend_template's default), route the service's frontend "
                       "to one of them with default_backend, and run init again") from None


def _validated_yaml(doc: dict[str, Any], output: Path) -> str:
    import yaml
    from pydantic import ValidationError

    from orchestrator.config.errors import validation_to_bad_input
    from orchestrator.config.loaded import CONFIG_EXAMPLE
    from orchestrator.config.models import BluegreenConfig

    try:
        BluegreenConfig.model_validate(doc)
    except ValidationError as exc:
        raise validation_to_bad_input(exc, str(output), BluegreenConfig,
                                      example=CONFIG_EXAMPLE) from None
    head = ("# bluegreen.yml written by `bluegreen init`: review it, add health checks, then\n"
            "# run `bluegreen doctor`. Relative paths are taken from this file's directory.\n")
    return head + yaml.safe_dump(doc, sort_keys=False, default_flow_style=False)


def _relative(path: Path, directory: Path) -> str:
    try:
        return os.path.relpath(path.resolve(), directory.resolve())
    except ValueError:
        return str(path.resolve())


def _write_new(path: Path, text: str) -> None:
    """Create `path` (0644); never over an existing file or through a symlink."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o644)
    with os.fdopen(fd, "w") as fh:
        fh.write(text)
