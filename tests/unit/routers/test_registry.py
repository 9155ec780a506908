"""The router registry: built-in drivers by kind, third-party drivers through the
entry-point group `bluegreen.routers` (a real installed distribution's metadata, in a
directory on sys.path), and the config's router union assembled from both."""

from __future__ import annotations

import json
import subprocess
import sys
import typing
from pathlib import Path

import pytest

from orchestrator.errors import RouterError
from orchestrator.routers import registry
from orchestrator.routers.base import RouterSettings
from orchestrator.routers.command.settings import CommandRouterSettings
from orchestrator.routers.haproxy.settings import HAProxySettings
from orchestrator.testing import FakeRouter

REPO = Path(__file__).resolve().parents[3]

# A third-party driver as a package would ship it: its settings class (the registry
# entry) makes its router on demand. The router is bluegreen's own fake, so the test
# can see which class was made.
DRIVER = '''
from __future__ import annotations
from dataclasses import asdict, dataclass, field
from typing import Any, ClassVar, Literal
from orchestrator.routers.settings import STRICT, SettingError

@dataclass(frozen=True, kw_only=True)
class FakeLBSettings:
    __pydantic_config__: ClassVar[dict[str, Any]] = STRICT
    kind: Literal["fakelb"]
    endpoint: str
    frontends: dict[str, str] = field(default_factory=dict)
    confirm_header: str | None = None
    drain_seconds: float = 1.0

    def __post_init__(self) -> None:
        if not self.endpoint.startswith("fake://"):
            raise SettingError("endpoint", "must start with fake://")

    def backend_name(self, service, side):
        return None

    def flip_commands(self, service, to_side):
        return [f"fakelb {self.endpoint} {service} {to_side}"]

    def check_services(self, services):
        pass

    def make_router(self):
        from orchestrator.testing import FakeRouter
        return FakeRouter()

    def as_dict(self):
        return asdict(self)

    @classmethod
    def from_dict(cls, data):
        return cls(**data)
'''


def install_driver(root: Path, *, target: str = "bg_fakelb:FakeLBSettings") -> Path:
    """A distribution `bg-fakelb` in `root` (a sys.path entry) registering kind `fakelb`."""
    (root / "bg_fakelb.py").write_text(DRIVER)
    info = root / "bg_fakelb-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: bg-fakelb\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text(f"[bluegreen.routers]\nfakelb = {target}\n")
    return root


def test_builtin_kinds_are_their_settings_classes() -> None:
    assert registry.settings_class("haproxy") is HAProxySettings
    assert registry.settings_class("command") is CommandRouterSettings
    for kind, target in registry.BUILTIN.items():
        cls = registry.settings_class(kind)
        assert typing.get_args(typing.get_type_hints(cls)["kind"]) == (kind,), target


def test_settings_round_trip_through_plain_data() -> None:
    settings = CommandRouterSettings(kind="command", script="/bin/true", counters=True)
    again = registry.settings_from_dict(json.loads(json.dumps(settings.as_dict())))
    assert again == settings


def test_unknown_kind_names_the_kinds_there_are() -> None:
    with pytest.raises(RouterError) as caught:
        registry.settings_class("traefik")
    assert "traefik" in caught.value.message and "command, haproxy, nginx" in (caught.value.hint or "")


def test_an_installed_driver_is_found_by_its_kind(tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.syspath_prepend(str(install_driver(tmp_path)))
    cls = registry.settings_class("fakelb")
    assert cls.__name__ == "FakeLBSettings"
    assert list(registry.settings_classes()) == ["haproxy", "command", "nginx", "fakelb"]
    settings: RouterSettings = registry.settings_from_dict(
        {"kind": "fakelb", "endpoint": "fake://lb1", "frontends": {},
         "confirm_header": None, "drain_seconds": 1.0})
    assert isinstance(registry.make_router(settings), FakeRouter)
    assert settings.flip_commands("web", "green") == ["fakelb fake://lb1 web green"]


def test_a_driver_that_cannot_be_loaded_is_named(tmp_path: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.syspath_prepend(str(install_driver(tmp_path, target="bg_fakelb:Missing")))
    with pytest.raises(RouterError) as caught:
        registry.settings_class("fakelb")
    assert "fakelb" in caught.value.message and "bg_fakelb:Missing" in caught.value.message


def test_a_builtin_kind_is_never_replaced(tmp_path: Path,
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    install_driver(tmp_path)
    info = tmp_path / "bg_fakelb-1.0.dist-info" / "entry_points.txt"
    info.write_text("[bluegreen.routers]\nhaproxy = bg_fakelb:FakeLBSettings\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    assert registry.settings_class("haproxy") is HAProxySettings
    assert list(registry.settings_classes()) == ["haproxy", "command", "nginx"]


def _load_in_subprocess(config: Path, plugins: Path) -> subprocess.CompletedProcess[str]:
    """A fresh process (the config's router union is built when config.models is imported)
    with the plugin directory on its path, as an installed package would be."""
    code = (
        "import sys\n"
        "from orchestrator.config.loaded import load_config\n"
        "from orchestrator.errors import BadInput\n"
        "try:\n"
        f"    cfg = load_config({str(config)!r})\n"
        "except BadInput as e:\n"
        "    print('BadInput:', e.message, '|', e.hint); sys.exit(2)\n"
        "print(type(cfg.router).__name__, type(cfg.router.make_router()).__name__)\n"
    )
    env = {"PYTHONPATH": f"{plugins}:{REPO}", "PATH": "/usr/bin:/bin"}
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          env=env, check=False, timeout=60)


def _config(directory: Path, router: dict[str, object]) -> Path:
    (directory / "hosts.yml").write_text("all: {}\n")
    (directory / "known_hosts").write_text("")
    doc = {"version": 1, "inventory": "hosts.yml", "ssh": {"known_hosts": "known_hosts"},
           "router": router,
           "services": {"web": {"sides": {"blue": "web_blue", "green": "web_green"},
                                "patch": {"packages": [{"name": "demo-web"}]}}}}
    path = directory / "bluegreen.yml"
    path.write_text(json.dumps(doc))
    return path


def test_the_config_accepts_an_installed_drivers_settings(tmp_path: Path) -> None:
    (tmp_path / "site").mkdir()
    plugins = install_driver(tmp_path / "site")
    config = _config(tmp_path, {"kind": "fakelb", "endpoint": "fake://lb1"})
    proc = _load_in_subprocess(config, plugins)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout.split() == ["FakeLBSettings", "FakeRouter"]
    # its own checks run as part of bluegreen.yml's validation, named like ours
    bad = _config(tmp_path, {"kind": "fakelb", "endpoint": "http://lb1"})
    proc = _load_in_subprocess(bad, plugins)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "router.endpoint" in proc.stdout and "fake://" in proc.stdout, proc.stdout


def test_without_the_package_its_kind_is_unknown(tmp_path: Path) -> None:
    config = _config(tmp_path, {"kind": "fakelb", "endpoint": "fake://lb1"})
    proc = _load_in_subprocess(config, tmp_path / "empty")
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "router.kind: unknown kind 'fakelb'" in proc.stdout, proc.stdout
    assert "haproxy, command" in proc.stdout, proc.stdout
