"""Each driver's settings answer what the engine asks of any driver (`RouterSettings`):
no router kind is tested by name outside its folder."""

from __future__ import annotations

from pathlib import Path

import pytest

from orchestrator.routers.command.settings import CommandRouterSettings
from orchestrator.routers.haproxy.settings import HAProxySettings
from orchestrator.routers.settings import SettingError

HAPROXY = HAProxySettings(kind="haproxy", socket="unix:///run/haproxy/admin.sock",
                          map_file="/etc/haproxy/bg.map", server_state_file="/var/lib/haproxy/st",
                          frontends={"web": "http://lb/"}, drain_seconds=3.0)
COMMAND = CommandRouterSettings(kind="command", script="/usr/local/bin/lb",
                                frontends={"web": "http://lb/"})


def test_haproxy_names_its_backends_and_shows_its_map_change() -> None:
    assert HAPROXY.backend_name("web", "green") == "web_green"
    assert HAPROXY.flip_commands("web", "green") == [
        "show map /etc/haproxy/bg.map",
        "set map /etc/haproxy/bg.map web web_green",
        "write /etc/haproxy/bg.map and /var/lib/haproxy/st",
    ]
    assert HAPROXY.drain_seconds == 3.0 and HAPROXY.confirm_header == "X-Bluegreen-Backend"
    HAPROXY.check_services(["web", "api"])  # counters always: observable without frontends


def test_command_shows_its_script_call_and_drains_by_its_script() -> None:
    assert COMMAND.backend_name("web", "green") is None
    assert COMMAND.flip_commands("web", "green") == ["/usr/local/bin/lb flip web green"]
    assert COMMAND.drain_seconds == 10.0


def test_command_needs_a_way_to_observe_every_service() -> None:
    COMMAND.check_services(["web"])
    with pytest.raises(SettingError) as caught:
        COMMAND.check_services(["web", "api"])
    assert caught.value.field == "router.frontends" and "api" in str(caught.value)
    assert "counters: true" in (caught.value.fix or "")
    counting = CommandRouterSettings(kind="command", script="/bin/lb", counters=True)
    counting.check_services(["web", "api"])


@pytest.mark.parametrize("settings", [HAPROXY, COMMAND])
def test_settings_round_trip_through_as_dict(settings: HAProxySettings | CommandRouterSettings
                                             ) -> None:
    assert type(settings).from_dict(settings.as_dict()) == settings


def test_haproxy_socket_as_a_bare_path_as_haproxy_cfg_writes_it() -> None:
    bare = HAProxySettings(kind="haproxy", socket="/run/haproxy/admin.sock",
                           map_file="/etc/haproxy/bg.map", server_state_file="/var/lib/st")
    assert bare.socket == "unix:///run/haproxy/admin.sock"
    with pytest.raises(SettingError) as caught:
        HAProxySettings(kind="haproxy", socket="run/haproxy/admin.sock",
                        map_file="/m", server_state_file="/s")
    assert caught.value.field == "socket" and "tcp://HOST:PORT" in str(caught.value)


def test_nginx_names_its_upstreams_and_shows_its_flip() -> None:
    from orchestrator.routers.nginx.settings import NginxSettings

    nginx = NginxSettings(kind="nginx", live_file="/etc/nginx/bluegreen.conf",
                          frontends={"web": "http://lb/"})
    assert nginx.backend_name("web", "green") == "web_green"
    assert nginx.flip_commands("web", "green") == [
        "write /etc/nginx/bluegreen.conf: web -> web_green",
        "/usr/sbin/nginx -t -c /etc/nginx/nginx.conf",
        "/usr/sbin/nginx -s reload -c /etc/nginx/nginx.conf",
    ]
    nginx.check_services(["web"])
    with pytest.raises(SettingError) as caught:
        nginx.check_services(["web", "api"])
    assert caught.value.field == "router.frontends" and "api" in str(caught.value)
    with pytest.raises(SettingError) as relative:
        NginxSettings(kind="nginx", live_file="bluegreen.conf")
    assert relative.value.field == "live_file"
    assert NginxSettings.from_dict(nginx.as_dict()) == nginx


def test_nginx_live_file_round_trip_and_foreign_lines() -> None:
    from orchestrator.errors import RouterError
    from orchestrator.routers.nginx import livefile

    text = livefile.render({"web": "web_green", "my_api": "my-api_blue"})
    assert livefile.parse(text, "f") == {"web": "web_green", "my_api": "my-api_blue"}
    assert livefile.variable("my-api") == "bluegreen_my_api"
    with pytest.raises(RouterError, match="f:2: not a line bluegreen writes"):
        livefile.parse(text.splitlines()[0] + "\nserver { listen 80; }\n", "f")


def test_the_map_lock_is_never_opened_through_a_symlink(tmp_path: Path) -> None:
    """Issue 21, item 13: a planted MAP_FILE.lock symlink is refused (O_NOFOLLOW), its
    target neither created nor touched."""
    from orchestrator.errors import RouterError
    from orchestrator.routers.haproxy.transport import _file_lock

    victim = tmp_path / "victim"
    lock = tmp_path / "bluegreen.map.lock"
    lock.symlink_to(victim)
    with pytest.raises(RouterError, match="cannot open the map lock"):
        with _file_lock(str(lock), 1.0):
            pass
    assert not victim.exists()
    plain = tmp_path / "other.map.lock"
    with _file_lock(str(plain), 1.0):
        assert plain.is_file()
