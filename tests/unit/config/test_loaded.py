"""bluegreen.yml loading: the example stays valid, and every bad input gives one clear BadInput."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from orchestrator.config.loaded import LoadedConfig, load_config, parse_package_arg
from orchestrator.config.location import CONFIG_ENV, MAX_CONFIG_BYTES
from orchestrator.config.models import BluegreenConfig, PackageSpec
from orchestrator.errors import BadInput

REPO = Path(__file__).resolve().parents[3]
EXAMPLE = REPO / "inventories" / "example" / "bluegreen.yml"


def minimal() -> dict[str, Any]:
    return {
        "version": 1,
        "inventory": "hosts.yml",
        "ssh": {"known_hosts": "known_hosts"},
        "router": {"kind": "command", "script": "./lb.sh", "counters": True},
        "services": {
            "web": {
                "sides": {"blue": "web_blue", "green": "web_green"},
                "patch": {"packages": [{"name": "demo-web", "version": "1.0.1"}]},
            }
        },
    }


def haproxy_router(**overrides: Any) -> dict[str, Any]:
    return {
        "kind": "haproxy",
        "socket": "unix:///run/haproxy/admin.sock",
        "map_file": "/etc/haproxy/bg.map",
        "server_state_file": "/var/lib/haproxy/state",
        **overrides,
    }


def write(tmp_path: Path, data: Any, name: str = "bluegreen.yml") -> Path:
    path = tmp_path / name
    path.write_text(yaml.safe_dump(data, sort_keys=False) if not isinstance(data, str) else data)
    return path


def bad(path: Path | str | None) -> str:
    with pytest.raises(BadInput) as info:
        load_config(path)
    assert info.value.exit_code == 2
    return str(info.value)


def set_in(data: dict[str, Any], dotted: str, value: Any) -> dict[str, Any]:
    node = data
    keys = dotted.split(".")
    for key in keys[:-1]:
        node = node.setdefault(key, {})
    node[keys[-1]] = value
    return data


# --------------------------------------------------------------------------- good input


def test_example_config_is_valid_and_uses_every_section() -> None:
    loaded = load_config(EXAMPLE)
    cfg = loaded.model
    assert isinstance(cfg, BluegreenConfig)
    assert loaded.base_dir == EXAMPLE.parent
    assert loaded.inventory_path == EXAMPLE.parent / "hosts.yml"
    assert loaded.state_path == EXAMPLE.parent / ".bluegreen" / "state.db"
    assert loaded.reports_path == EXAMPLE.parent / "reports"
    assert loaded.known_hosts_path == EXAMPLE.parent / "known_hosts"
    assert set(cfg.services) == {"web", "api"}
    web = cfg.services["web"]
    assert web.patch.packages[0] == PackageSpec(name="demo-web", version="1.0.1")
    assert web.patch.serial == "50%"
    assert web.health[0].url_for("10.0.0.1") == "http://10.0.0.1:8080/health"
    assert web.fixed_versions["openssl"] == "3.0.15-1~deb12u1"
    assert web.bake.url_path == "/health"
    assert cfg.services["api"].patch.security_updates is True
    assert cfg.router.kind == "haproxy"
    raw = yaml.safe_load(EXAMPLE.read_text())
    assert set(raw) == set(BluegreenConfig.model_fields), "example must use every section"


def test_defaults_and_relative_paths(tmp_path: Path) -> None:
    loaded = load_config(write(tmp_path, minimal()))
    cfg = loaded.model
    assert cfg.ssh.user == "root"
    assert cfg.state.path == ".bluegreen/state.db"
    assert loaded.state_path == tmp_path / ".bluegreen" / "state.db"
    assert loaded.reports_path == tmp_path / "reports"
    assert loaded.resolve("/abs/x") == Path("/abs/x")
    svc = cfg.services["web"]
    assert svc.bake.seconds == 30 and svc.bake.max_failures == 3 and svc.bake.url_path == "/"
    assert svc.patch.max_fail_percentage == 0 and svc.patch.timeout_seconds == 1800
    assert svc.patch.playbook == "playbooks/patch.yml"


def test_path_precedence(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    explicit = write(tmp_path, minimal(), "explicit.yml")
    env_dir = tmp_path / "env"
    env_dir.mkdir()
    from_env = write(env_dir, minimal(), "env.yml")
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    write(cwd, minimal())
    monkeypatch.chdir(cwd)
    monkeypatch.setenv(CONFIG_ENV, str(from_env))
    assert load_config(explicit).path == explicit
    assert load_config(None).path == from_env
    monkeypatch.delenv(CONFIG_ENV)
    assert load_config(None).path == cwd / "bluegreen.yml"


def test_serial_forms(tmp_path: Path) -> None:
    for given, expected in [(3, 3), ("50%", "50%"), ("7", 7), ("100%", "100%")]:
        data = set_in(minimal(), "services.web.patch.serial", given)
        assert load_config(write(tmp_path, data)).model.services["web"].patch.serial == expected


def test_playbook_resolution(tmp_path: Path) -> None:
    data = set_in(minimal(), "services.web.patch.playbook", "mine.yml")
    loaded = load_config(write(tmp_path, data))
    with pytest.raises(BadInput) as info:
        loaded.playbook_path("web")
    assert "services.web.patch.playbook" in str(info.value) and "fix:" in str(info.value)
    (tmp_path / "mine.yml").write_text("- hosts: all\n")
    assert loaded.playbook_path("web") == tmp_path / "mine.yml"
    # not next to the config: falls back to the shipped playbooks/ directory
    shipped = REPO / "playbooks" / "patch.yml"
    if shipped.is_file():
        elsewhere = tmp_path / "elsewhere"
        elsewhere.mkdir()
        loaded2 = load_config(write(elsewhere, minimal()))
        assert loaded2.playbook_path("web") == shipped


def test_loaded_config_unknown_service(tmp_path: Path) -> None:
    loaded = load_config(write(tmp_path, minimal()))
    assert isinstance(loaded, LoadedConfig)
    with pytest.raises(BadInput, match="did you mean 'web'"):
        loaded.service("wbe")


# --------------------------------------------------------------------------- file problems


def test_missing_file_names_fix(tmp_path: Path) -> None:
    msg = bad(tmp_path / "nope.yml")
    assert "nope.yml" in msg and "not found" in msg
    assert "fix:" in msg and "-c" in msg and CONFIG_ENV in msg


def test_missing_default_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv(CONFIG_ENV, raising=False)
    msg = bad(None)
    assert "bluegreen.yml" in msg and CONFIG_ENV in msg


def test_directory_instead_of_file(tmp_path: Path) -> None:
    msg = bad(tmp_path)
    assert str(tmp_path) in msg and "directory" in msg and "fix:" in msg


def test_file_over_one_mib_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "big.yml"
    # valid YAML, so only the size check can refuse it
    path.write_text("# " + "x" * (2 * MAX_CONFIG_BYTES) + "\nversion: 1\n")
    msg = bad(path)
    assert "big.yml" in msg and "limit" in msg and "fix:" in msg


def test_non_utf8(tmp_path: Path) -> None:
    path = tmp_path / "latin1.yml"
    path.write_bytes("version: 1\ninventory: h\xf6sts.yml\n".encode("latin-1"))
    msg = bad(path)
    assert "latin1.yml:2" in msg and "UTF-8" in msg and "fix:" in msg


def test_invalid_yaml_has_line_and_column(tmp_path: Path) -> None:
    path = write(tmp_path, "version: 1\nservices:\n  web: [unclosed\n  api: x\n")
    msg = bad(path)
    assert "bluegreen.yml:" in msg and "invalid YAML" in msg
    assert "line" in msg and "column" in msg and "fix:" in msg


@pytest.mark.parametrize("text", ["", "# only a comment\n", "---\n"])
def test_empty_file(tmp_path: Path, text: str) -> None:
    msg = bad(write(tmp_path, text))
    assert "empty" in msg and "fix:" in msg


@pytest.mark.parametrize("text", ["- a\n- b\n", "just text\n", "42\n"])
def test_top_level_not_a_mapping(tmp_path: Path, text: str) -> None:
    msg = bad(write(tmp_path, text))
    assert "bluegreen.yml" in msg and "mapping" in msg and "fix:" in msg


def test_yaml_objects_are_not_constructed(tmp_path: Path) -> None:
    msg = bad(write(tmp_path, "version: !!python/object/apply:os.system ['true']\n"))
    assert "invalid YAML" in msg


# --------------------------------------------------------------------------- schema problems


def test_unknown_field_suggests_closest(tmp_path: Path) -> None:
    data = minimal()
    data["services"]["web"]["bake"] = {"secnds": 10}
    msg = bad(write(tmp_path, data))
    first = msg.splitlines()[0]
    assert first.endswith(
        "bluegreen.yml: services.web.bake.secnds: unknown field — did you mean 'seconds'?"
        " (allowed: seconds, interval_seconds, url_path, max_failures, max_error_ratio,"
        " min_responses, steps, analysis)"
    )
    assert "did you mean 'seconds'?" in first
    assert "(allowed: seconds, interval_seconds, url_path, max_failures," in first
    assert "fix: rename it to 'seconds'" in msg
    assert "pydantic" not in msg and "errors.pydantic.dev" not in msg


def test_unknown_top_level_and_router_fields(tmp_path: Path) -> None:
    data = minimal()
    data["reprots_dir"] = "x"
    assert "reprots_dir: unknown field — did you mean 'reports_dir'?" in bad(write(tmp_path, data))
    data = minimal()
    data["router"]["scirpt"] = "x"
    msg = bad(write(tmp_path, data))
    # the discriminator tag ('command') is not part of the user's path
    assert "router.scirpt: unknown field — did you mean 'script'?" in msg


def test_unknown_router_kind_lists_allowed(tmp_path: Path) -> None:
    data = set_in(minimal(), "router.kind", "traefik")
    msg = bad(write(tmp_path, data))
    assert "router.kind" in msg and "'traefik'" in msg
    assert "haproxy" in msg and "command" in msg and "fix:" in msg
    data = minimal()
    del data["router"]["kind"]
    msg = bad(write(tmp_path, data))
    assert "router.kind: required field is missing" in msg and "haproxy" in msg


def test_missing_required_field(tmp_path: Path) -> None:
    data = minimal()
    del data["ssh"]["known_hosts"]
    msg = bad(write(tmp_path, data))
    assert "ssh.known_hosts: required field is missing" in msg
    assert "fix: add `known_hosts:` under `ssh:`" in msg


def test_wrong_types(tmp_path: Path) -> None:
    data = set_in(minimal(), "services.web.bake.seconds", "soon")
    msg = bad(write(tmp_path, data))
    assert "services.web.bake.seconds" in msg and "'soon'" in msg and "fix:" in msg
    data = set_in(minimal(), "services.web.health", {"url": "x"})
    assert "services.web.health: expected a list" in bad(write(tmp_path, data))
    data = set_in(minimal(), "ssh", "root")
    assert "ssh: expected a mapping" in bad(write(tmp_path, data))
    data = set_in(minimal(), "version", 2)
    assert "version: must be 1" in bad(write(tmp_path, data))


def test_unquoted_numeric_version_says_quote_it(tmp_path: Path) -> None:
    data = minimal()
    data["services"]["web"]["patch"]["packages"] = [{"name": "demo-web", "version": 1.1}]
    msg = bad(write(tmp_path, data))
    assert "services.web.patch.packages[0].version" in msg and "quote" in msg


def test_equal_sides(tmp_path: Path) -> None:
    data = set_in(minimal(), "services.web.sides", {"blue": "web", "green": "web"})
    msg = bad(write(tmp_path, data))
    assert "services.web.sides" in msg and "different groups" in msg and "fix:" in msg


@pytest.mark.parametrize("name", ["Web", "1web", "we b", "a" * 64])
def test_bad_service_name(tmp_path: Path, name: str) -> None:
    data = minimal()
    data["services"] = {name: data["services"]["web"]}
    msg = bad(write(tmp_path, data))
    assert "services." in msg and "service name" in msg and "fix:" in msg


def test_no_services(tmp_path: Path) -> None:
    msg = bad(write(tmp_path, set_in(minimal(), "services", {})))
    assert "services: must not be empty" in msg and "fix:" in msg


@pytest.mark.parametrize(
    ("patch", "needle"),
    [
        ({"packages": []}, "nothing to patch"),
        ({"security_updates": False}, "nothing to patch"),
        ({"packages": [{"name": "a"}], "security_updates": True}, "only one of"),
        ({"packages": [{"name": "a"}, {"name": "a"}]}, "more than once"),
        ({"packages": [{"name": "Bad Name"}]}, "invalid package name"),
        ({"packages": [{"name": "a", "version": "1.0;rm -rf /"}]}, "invalid package version"),
        ({"security_updates": True, "serial": 0}, "serial"),
        ({"security_updates": True, "serial": 10001}, "serial"),
        ({"security_updates": True, "serial": "150%"}, "serial"),
        ({"security_updates": True, "serial": True}, "serial"),
        ({"security_updates": True, "max_fail_percentage": 101}, "max_fail_percentage"),
        ({"security_updates": True, "timeout_seconds": 86401}, "timeout_seconds"),
    ],
)
def test_bad_patch_settings(tmp_path: Path, patch: dict[str, Any], needle: str) -> None:
    data = set_in(minimal(), "services.web.patch", patch)
    msg = bad(write(tmp_path, data))
    assert "services.web.patch" in msg and needle in msg and "fix:" in msg


@pytest.mark.parametrize(
    ("section", "value", "needle"),
    [
        ("bake.seconds", 86401, "services.web.bake.seconds"),
        ("bake.max_failures", 0, "services.web.bake.max_failures"),
        ("bake.url_path", "health", "url_path must start with '/'"),
        ("health", [{"url": "http://web:8080/"}], "{host}"),
        ("health", [{"url": "ftp://{host}/"}], "http://"),
        ("health", [{"url": "http://{host}:{port}/"}], "only the placeholder"),
        ("health", [{"url": "http://{host}/", "expect_status": 42}], "expect_status"),
        ("fixed_versions", {"openssl": "3.0 && reboot"}, "invalid package version"),
    ],
)
def test_absurd_or_bad_service_values(
    tmp_path: Path, section: str, value: Any, needle: str
) -> None:
    data = set_in(minimal(), f"services.web.{section}", value)
    msg = bad(write(tmp_path, data))
    assert needle in msg and "fix:" in msg


def test_frontend_for_unknown_service(tmp_path: Path) -> None:
    data = minimal()
    data["router"] = haproxy_router(frontends={"wbe": "http://lb"})
    msg = bad(write(tmp_path, data))
    assert "router.frontends" in msg and "wbe" in msg


def test_command_router_needs_a_way_to_observe_each_service(tmp_path: Path) -> None:
    data = minimal()
    data["router"] = {"kind": "command", "script": "./lb.sh"}
    msg = bad(write(tmp_path, data))
    assert "router.frontends" in msg and "web" in msg and "counters" in msg
    assert "fix: add the URL of each service's frontend" in msg
    data["router"]["frontends"] = {"web": "http://lb.example.net/"}
    assert load_config(write(tmp_path, data)).router.frontends == {  # type: ignore[union-attr]
        "web": "http://lb.example.net/"}


def test_several_errors_in_one_message(tmp_path: Path) -> None:
    data = minimal()
    data["ssh"]["usr"] = "x"
    data["services"]["web"]["bake"] = {"secnds": 1}
    msg = bad(write(tmp_path, data))
    assert msg.count("unknown field") == 2 and "also:" in msg


# --------------------------------------------------------------------------- --package


@pytest.mark.parametrize(
    ("arg", "expected"),
    [
        ("demo-web=1.0.1", PackageSpec(name="demo-web", version="1.0.1")),
        ("openssl", PackageSpec(name="openssl", version=None)),
        ("openssl=3.0.15-1~deb12u1", PackageSpec(name="openssl", version="3.0.15-1~deb12u1")),
        ("libc6=1:2.36-9+deb12u4", PackageSpec(name="libc6", version="1:2.36-9+deb12u4")),
        ("kernel=5.14.0_427.el9", PackageSpec(name="kernel", version="5.14.0_427.el9")),
    ],
)
def test_parse_package_arg_good(arg: str, expected: PackageSpec) -> None:
    assert parse_package_arg(arg) == expected
    assert str(expected) == arg


@pytest.mark.parametrize(
    "arg",
    [
        "demo-web=1.0;rm -rf /",
        "demo-web=1.0 1",
        "demo-web=$(id)",
        "demo-web=`id`",
        "demo-web=1.*",
        "demo web",
        "Demo-Web",
        "demo-web=",
        "=1.0",
        "",
        "-rf",
    ],
)
def test_parse_package_arg_bad(arg: str) -> None:
    with pytest.raises(BadInput) as info:
        parse_package_arg(arg)
    msg = str(info.value)
    assert "--package" in msg and "fix:" in msg and "NAME=VERSION" in msg


# ------------------------------------------------------- witness settings as people write them


def test_unquoted_syslog_off_means_off(tmp_path: Path) -> None:
    """`syslog: off` unquoted is a YAML boolean: it means what was written."""
    path = write(tmp_path, "version: 1\n" + yaml.safe_dump(
        {k: v for k, v in minimal().items() if k != "version"}, sort_keys=False)
        + "audit:\n  witness:\n    syslog: off\n")
    assert load_config(path).audit.witness.syslog == "off"
    message = bad(write(tmp_path, set_in(minimal(), "audit.witness.syslog", True), "on.yml"))
    assert "audit.witness.syslog" in message and "local, off, or tcp://" in message


def test_syslog_defaults_to_local_only_without_a_file_witness(tmp_path: Path) -> None:
    assert load_config(write(tmp_path, minimal())).audit.witness.syslog == "local"
    with_file = set_in(minimal(), "audit.witness.file", "/srv/witness.log")
    assert load_config(write(tmp_path, with_file, "f.yml")).audit.witness.syslog == "off"
    both = set_in(set_in(minimal(), "audit.witness.file", "/srv/w.log"),
                  "audit.witness.syslog", "local")
    assert load_config(write(tmp_path, both, "b.yml")).audit.witness.syslog == "local"
