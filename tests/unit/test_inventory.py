"""Inventory -> Fleet with Ansible's real parser: formats agree, vars are read, secrets dropped,
and every bad inventory gives one clear BadInput (and prints nothing)."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest
import yaml

from orchestrator.config.loaded import LoadedConfig, load_config
from orchestrator.errors import BadInput
from orchestrator.inventory import Fleet, Host, ServiceHosts, load_fleet

REPO = Path(__file__).resolve().parents[2]
EXAMPLE = REPO / "inventories" / "example" / "bluegreen.yml"

YAML_INV = """\
all:
  children:
    web:
      vars:
        app_port: 8080
      children:
        web_blue:
          hosts:
            web-b1:
              ansible_host: 10.0.1.1
            web-b2:
              ansible_host: 10.0.1.2
              ansible_port: 2222
        web_green:
          hosts:
            web-g1:
              ansible_host: 10.0.2.1
              ansible_user: deploy
            web-g2:
              ansible_host: 10.0.2.2
"""

INI_INV = """\
[web_blue]
web-b1 ansible_host=10.0.1.1
web-b2 ansible_host=10.0.1.2 ansible_port=2222

[web_green]
web-g1 ansible_host=10.0.2.1 ansible_user=deploy
web-g2 ansible_host=10.0.2.2

[web:children]
web_blue
web_green

[web:vars]
app_port=8080
"""


def make_config(
    tmp_path: Path,
    inventory: str,
    services: dict[str, Any] | None = None,
    *,
    ssh_user: str | None = None,
) -> LoadedConfig:
    ssh: dict[str, Any] = {"known_hosts": "known_hosts"}
    if ssh_user:
        ssh["user"] = ssh_user
    data = {
        "version": 1,
        "inventory": inventory,
        "ssh": ssh,
        "router": {"kind": "command", "script": "./lb.sh", "counters": True},
        "services": services
        or {
            "web": {
                "sides": {"blue": "web_blue", "green": "web_green"},
                "patch": {"security_updates": True},
            }
        },
    }
    path = tmp_path / "bluegreen.yml"
    path.write_text(yaml.safe_dump(data))
    return load_config(path)


def fleet_from(tmp_path: Path, name: str, text: str, **kwargs: Any) -> Fleet:
    (tmp_path / name).write_text(text)
    return load_fleet(make_config(tmp_path, name, **kwargs))


def bad_fleet(tmp_path: Path, name: str, text: str, **kwargs: Any) -> str:
    (tmp_path / name).write_text(text)
    config = make_config(tmp_path, name, **kwargs)
    with pytest.raises(BadInput) as info:
        load_fleet(config)
    assert info.value.exit_code == 2
    msg = str(info.value)
    assert "fix:" in msg
    return msg


# --------------------------------------------------------------------------- good input


def test_example_inventory_matches_example_config() -> None:
    fleet = load_fleet(load_config(EXAMPLE))
    assert set(fleet.services) == {"web", "api"}
    web = fleet.services["web"]
    assert [h.name for h in web.blue] == ["web-blue-1.example.net", "web-blue-2.example.net"]
    assert [h.address for h in web.side("green")] == ["10.20.2.11", "10.20.2.12"]
    assert all(h.user == "deploy" and h.port == 22 for h in web.blue + web.green)
    assert web.blue[0].vars["app_port"] == 8080  # group_vars/web.yml
    assert web.blue[0].vars["ansible_become"] is True  # group_vars/all.yml
    api = fleet.service("api")
    assert api.blue[0].port == 2222 and api.blue[0].vars["app_port"] == 9090


def test_yaml_and_ini_give_the_same_fleet(tmp_path: Path) -> None:
    (tmp_path / "y").mkdir()
    (tmp_path / "i").mkdir()
    from_yaml = fleet_from(tmp_path / "y", "hosts.yml", YAML_INV)
    from_ini = fleet_from(tmp_path / "i", "hosts.ini", INI_INV)
    assert from_yaml == from_ini
    web = from_yaml.services["web"]
    assert web == ServiceHosts(
        service="web",
        blue=(
            Host("web-b1", "10.0.1.1", 22, "root", {"app_port": 8080, "ansible_host": "10.0.1.1"}),
            Host(
                "web-b2",
                "10.0.1.2",
                2222,
                "root",
                {"app_port": 8080, "ansible_host": "10.0.1.2", "ansible_port": 2222},
            ),
        ),
        green=(
            Host(
                "web-g1",
                "10.0.2.1",
                22,
                "deploy",
                {"app_port": 8080, "ansible_host": "10.0.2.1", "ansible_user": "deploy"},
            ),
            Host("web-g2", "10.0.2.2", 22, "root", {"app_port": 8080, "ansible_host": "10.0.2.2"}),
        ),
    )
    assert web.side("blue") is web.blue and web.side("green") is web.green


def test_ssh_user_from_config_is_the_default(tmp_path: Path) -> None:
    fleet = fleet_from(tmp_path, "hosts.yml", YAML_INV, ssh_user="ops")
    web = fleet.services["web"]
    assert [h.user for h in web.blue + web.green] == ["ops", "ops", "deploy", "ops"]


def test_directory_inventory_with_group_and_host_vars(tmp_path: Path) -> None:
    inv = tmp_path / "inv"
    (inv / "group_vars").mkdir(parents=True)
    (inv / "host_vars").mkdir()
    (inv / "hosts").write_text(
        "[web_blue]\nb1\n\n[web_green]\ng1\n\n[web:children]\nweb_blue\nweb_green\n"
    )
    (inv / "group_vars" / "all.yml").write_text("ansible_user: deploy\nregion: eu\n")
    (inv / "group_vars" / "web.yml").write_text("app_port: 8080\n")
    (inv / "host_vars" / "b1.yml").write_text("ansible_host: 192.0.2.10\nansible_port: 2200\n")
    (inv / "host_vars" / "g1").mkdir()
    (inv / "host_vars" / "g1" / "main.yml").write_text("ansible_host: 192.0.2.20\n")
    fleet = load_fleet(make_config(tmp_path, "inv"))
    b1, g1 = fleet.services["web"].blue[0], fleet.services["web"].green[0]
    assert (b1.address, b1.port, b1.user) == ("192.0.2.10", 2200, "deploy")
    assert (g1.address, g1.port, g1.user) == ("192.0.2.20", 22, "deploy")
    assert g1.vars["region"] == "eu" and g1.vars["app_port"] == 8080


def test_the_probes_connect_with_the_inventorys_key_user_and_port(tmp_path: Path) -> None:
    """ansible_ssh_private_key_file (host_vars beat group_vars, ~ expanded) and
    ansible_user/ansible_port reach the probes' targets and bluegreen's own ssh as Ansible
    uses them; a host without one gets ssh.private_key_file."""
    from orchestrator.patching.ssh import Masters
    from orchestrator.probes.gate import targets_for

    inv = tmp_path / "inv"
    (inv / "group_vars").mkdir(parents=True)
    (inv / "host_vars").mkdir()
    (inv / "hosts").write_text("[web_blue]\nb1\nb2\n\n[web_green]\ng1\n\n"
                               "[web:children]\nweb_blue\nweb_green\n")
    (inv / "group_vars" / "web_blue.yml").write_text(
        "ansible_ssh_private_key_file: ~/.ssh/blue_key\nansible_user: deploy\n")
    (inv / "host_vars" / "b2.yml").write_text(
        "ansible_ssh_private_key_file: /keys/b2\nansible_port: 2200\n")
    config = make_config(tmp_path, "inv")
    (tmp_path / "config.key").write_text("")
    data = yaml.safe_load(config.path.read_text())
    data["ssh"]["private_key_file"] = "config.key"
    config.path.write_text(yaml.safe_dump(data))
    config = load_config(config.path)
    web = load_fleet(config).services["web"]
    b1, b2, g1 = (*web.blue, *web.green)
    assert b1.key_file == str(Path.home() / ".ssh" / "blue_key")
    assert not any("key" in k for k in b1.vars)  # the path is not a var (still "secret")
    targets = {t.name: t for t in targets_for(config, [b1, b2, g1])}
    assert (targets["b1"].key_file, targets["b1"].user, targets["b1"].port) == (
        b1.key_file, "deploy", 22)
    assert (targets["b2"].key_file, targets["b2"].user, targets["b2"].port) == (
        "/keys/b2", "deploy", 2200)
    assert targets["g1"].key_file == str(tmp_path / "config.key")
    ssh = Masters(config, [b2], tmp_path / "cp", timeout=5)._ssh(b2, "b2")
    assert "IdentityFile=/keys/b2" in ssh and "Port=2200" in ssh and "User=deploy" in ssh


def test_templated_ansible_host_is_rendered(tmp_path: Path) -> None:
    text = YAML_INV.replace("ansible_host: 10.0.2.2", "ansible_host: '10.0.2.{{ 1 + 1 }}'")
    fleet = fleet_from(tmp_path, "hosts.yml", text)
    assert fleet.services["web"].green[1].address == "10.0.2.2"


def test_secrets_are_never_in_host_vars(tmp_path: Path) -> None:
    from ansible.parsing.vault import VaultLib, VaultSecret

    vault = VaultLib([("default", VaultSecret(b"s3cret-pw"))])
    inline = vault.encrypt("hunter2").decode()
    inv = tmp_path / "inv"
    (inv / "group_vars" / "web").mkdir(parents=True)
    secrets = textwrap.dedent(
        """\
        db_password: hunter2
        api_token: abc
        API_KEY: abc
        ansible_become_pass: x
        ansible_ssh_private_key_file: /root/.ssh/id
        my_secret: x
        nested: {keep: 1, admin_passwd: x}
        harmless: yes
        encrypted_thing: !vault |
        """
    ) + textwrap.indent(inline, "  ")
    # `all:` vars, indented under the top-level `all:` of YAML_INV
    (inv / "hosts.yml").write_text(YAML_INV + "  vars:\n" + textwrap.indent(secrets, "    ") + "\n")
    # a whole vault-encrypted vars file: skipped (never decrypted), not a failure
    (inv / "group_vars" / "web" / "vault.yml").write_bytes(
        vault.encrypt("vault_db_password: x\napp_port: 1\n")
    )
    (inv / "group_vars" / "web" / "main.yml").write_text("tls_cert: /etc/ssl/web.pem\n")
    fleet = load_fleet(make_config(tmp_path, "inv/hosts.yml"))
    for host in fleet.services["web"].blue + fleet.services["web"].green:
        keys = set(host.vars)
        assert keys.isdisjoint(
            {
                "db_password",
                "api_token",
                "API_KEY",
                "ansible_become_pass",
                "ansible_ssh_private_key_file",
                "my_secret",
                "encrypted_thing",
                "vault_db_password",
            }
        )
        assert host.vars["nested"] == {"keep": 1}
        assert host.vars["harmless"] is True
        assert host.vars["tls_cert"] == "/etc/ssl/web.pem"
        assert host.vars["app_port"] == 8080
        assert "hunter2" not in repr(host)


def test_module_import_does_not_import_ansible() -> None:
    code = "import sys, orchestrator.inventory; print('ansible' in sys.modules)"
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True
    )
    assert out.stdout.strip() == "False"


# --------------------------------------------------------------------------- bad input


def test_missing_inventory(tmp_path: Path) -> None:
    config = make_config(tmp_path, "nope.yml")
    with pytest.raises(BadInput) as info:
        load_fleet(config)
    msg = str(info.value)
    assert "nope.yml" in msg and "not found" in msg and "fix:" in msg and "inventory:" in msg


def test_unparsable_inventory_is_bad_input_and_prints_nothing(
    tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    msg = bad_fleet(tmp_path, "hosts.yml", "all:\n  hosts: [this, is: {not valid\n")
    assert "hosts.yml" in msg and "not a valid Ansible inventory" in msg
    msg = bad_fleet(tmp_path, "hosts.ini", "[web_blue\nb1 ansible_host=\n")
    assert "hosts.ini" in msg and "not a valid Ansible inventory" in msg
    out, err = capfd.readouterr()
    assert out == "" and err == ""


def test_unparsable_file_in_inventory_directory(tmp_path: Path) -> None:
    inv = tmp_path / "inv"
    inv.mkdir()
    (inv / "a.yml").write_text(YAML_INV)
    (inv / "b.yml").write_text("all:\n  hosts: [broken\n")
    config = make_config(tmp_path, "inv")
    with pytest.raises(BadInput) as info:
        load_fleet(config)
    assert "b.yml" in str(info.value) and "fix:" in str(info.value)


def test_group_not_in_inventory_lists_groups(tmp_path: Path) -> None:
    services = {
        "web": {
            "sides": {"blue": "web_bleu", "green": "web_green"},
            "patch": {"security_updates": True},
        }
    }
    msg = bad_fleet(tmp_path, "hosts.yml", YAML_INV, services=services)
    assert "hosts.yml" in msg and "'web_bleu'" in msg and "services.web.sides.blue" in msg
    assert "did you mean 'web_blue'?" in msg
    assert "web, web_blue, web_green" in msg


def test_side_without_hosts(tmp_path: Path) -> None:
    text = "[web_blue]\nb1\n\n[web_green]\n\n[web_green:vars]\nx=1\n"
    msg = bad_fleet(tmp_path, "hosts.ini", text)
    assert "hosts.ini" in msg and "'web_green'" in msg and "no hosts" in msg
    assert "services.web.sides.green" in msg


def test_same_host_in_both_sides(tmp_path: Path) -> None:
    text = "[web_blue]\nb1\nshared\n\n[web_green]\ng1\nshared\n"
    msg = bad_fleet(tmp_path, "hosts.ini", text)
    assert "'shared'" in msg and "both sides" in msg and "same machine" in msg


def test_same_address_in_both_sides(tmp_path: Path) -> None:
    text = "[web_blue]\nb1 ansible_host=10.0.0.5\n\n[web_green]\ng1 ansible_host=10.0.0.5\n"
    msg = bad_fleet(tmp_path, "hosts.ini", text)
    assert "'b1'" in msg and "'g1'" in msg and "same machine" in msg


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ("[web_blue]\nb1 ansible_host='10.0.0.1;reboot'\n\n[web_green]\ng1\n", "ansible_host"),
        ("[web_blue]\nb1 ansible_host='a b'\n\n[web_green]\ng1\n", "ansible_host"),
        ("[web_blue]\nb1$(id)\n\n[web_green]\ng1\n", "host name"),
        ("[web_blue]\nb1 ansible_port=70000\n\n[web_green]\ng1\n", "ansible_port"),
        ("[web_blue]\nb1 ansible_port=0\n\n[web_green]\ng1\n", "ansible_port"),
        ("[web_blue]\nb1 ansible_port=ssh\n\n[web_green]\ng1\n", "ansible_port"),
        ("[web_blue]\nb1 ansible_user='root;id'\n\n[web_green]\ng1\n", "ansible_user"),
    ],
)
def test_unsafe_or_invalid_host_values(tmp_path: Path, text: str, needle: str) -> None:
    msg = bad_fleet(tmp_path, "hosts.ini", text)
    assert "hosts.ini" in msg and needle in msg


def test_unsafe_host_name_in_yaml(tmp_path: Path) -> None:
    text = "web_blue:\n  hosts:\n    'b1 && reboot':\nweb_green:\n  hosts:\n    g1:\n"
    msg = bad_fleet(tmp_path, "hosts.yml", text)
    assert "hosts.yml" in msg and "host name" in msg


def test_captured_output_from_parallel_threads_leaves_stdout_as_it_was() -> None:
    """Parallel campaign waves parse the inventory in several threads at once: the swapped
    sys.stdout must come back, not another thread's buffer (that silenced `--json`)."""
    import sys
    import threading
    import time

    from orchestrator.inventory import captured_output

    before_out, before_err = sys.stdout, sys.stderr
    barrier = threading.Barrier(4)

    def parse_like_ansible() -> None:
        barrier.wait()
        for _ in range(20):
            with captured_output() as buf:
                print("[WARNING]: ansible says something")
                time.sleep(0.001)
            assert "WARNING" in buf.getvalue()

    threads = [threading.Thread(target=parse_like_ansible) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sys.stdout is before_out and sys.stderr is before_err


@pytest.mark.parametrize(
    ("var", "value", "field"),
    [
        ("ansible_host", "-oProxyCommand=touch%20/tmp/pwned", "ansible_host"),
        ("ansible_host", "-oProxyCommand", "ansible_host"),
        ("ansible_user", "-x", "ansible_user"),
    ],
)
def test_a_leading_dash_is_refused(tmp_path: Path, var: str, value: str, field: str) -> None:
    """A host address or user that ssh would take for an option (issue 21, item 13)."""
    inv = YAML_INV.replace("              ansible_host: 10.0.2.2\n",
                           f"              ansible_host: 10.0.2.2\n              {var}: '{value}'\n")
    msg = bad_fleet(tmp_path, "hosts.yml", inv)
    assert field in msg and "web-g2" in msg and "no '-' first" in msg, msg


def test_a_host_name_with_a_leading_dash_is_refused(tmp_path: Path) -> None:
    msg = bad_fleet(tmp_path, "hosts.ini", INI_INV.replace("web-g2 ansible_host=10.0.2.2",
                                                          "-oX ansible_host=10.0.2.2"))
    assert "host name '-oX'" in msg and "no '-' first" in msg, msg
