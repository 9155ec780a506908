"""HAProxy's own setup, as `doctor` and the precheck check it, on a scripted runtime API:
the socket's level, the map, the server-state file in haproxy.cfg, the files a flip writes."""

from __future__ import annotations

from pathlib import Path

from orchestrator.errors import RouterError
from orchestrator.routers.base import Check
from orchestrator.routers.haproxy.readiness import exposure_maps, files_writable, readiness
from orchestrator.routers.haproxy.router import HAProxyRouter
from orchestrator.routers.haproxy.settings import HAProxySettings

MAP = "/etc/haproxy/bluegreen.map"
STATE = "/var/lib/haproxy/server-state"
CFG = f"""global
    stats socket /run/haproxy/admin.sock mode 600 level admin
    server-state-file {STATE}   # kept across reloads
defaults
    load-server-state-from-file global
"""


class ScriptedTransport:
    """Replies by command; files by path (None: absent)."""

    description = "scripted"

    def __init__(self, level: str = "admin", maps: tuple[str, ...] = (MAP,),
                 files: dict[str, str] | None = None, down: bool = False) -> None:
        self.level, self.maps, self.down = level, maps, down
        self.files = files if files is not None else {
            "/proc/4242/cmdline": "/usr/sbin/haproxy\0-f\0/etc/haproxy/haproxy.cfg\0-p\0x\0",
            "/etc/haproxy/haproxy.cfg": CFG}

    def command(self, line: str) -> str:
        if self.down:
            raise RouterError("unix:///run/haproxy/admin.sock: connection refused",
                              hint="start HAProxy")
        if line == "show cli level":
            return self.level + "\n"
        if line == "show map":
            rows = [f"{i} ({m}) pattern loaded from file '{m}' used by map at file 'x' line 1."
                    " curr_ver=0 next_ver=0 entry_cnt=1" for i, m in enumerate(self.maps)]
            return "# id (file) description\n" + "\n".join(rows) + "\n"
        if line == "show info":
            return "Name: HAProxy\nVersion: 2.6.12\nPid: 4242\nUptime_sec: 3\n"
        raise AssertionError(line)

    def read_text(self, path: str) -> str | None:
        return self.files.get(path)

    def write_atomic(self, path: str, text: str, mode: int = 0o644) -> None:
        raise AssertionError("doctor writes nothing")

    def persist_map(self, map_file: str, server_state_file: str, expect: str) -> None:
        raise AssertionError("doctor writes nothing")

    def close(self) -> None:
        """Nothing open."""


def router(transport: ScriptedTransport, **settings: str) -> HAProxyRouter:
    return HAProxyRouter(HAProxySettings(kind="haproxy", socket="/run/haproxy/admin.sock",
                                         map_file=settings.get("map_file", MAP),
                                         server_state_file=STATE), transport)


def by_name(transport: ScriptedTransport, **settings: str) -> dict[str, Check]:
    return {c.name: c for c in readiness(router(transport, **settings), ["web"])}


def test_a_good_setup_passes_and_files_of_an_unknown_transport_are_unknown() -> None:
    checks = by_name(ScriptedTransport())
    assert [c.ok for c in checks.values()] == [True, True, True, None, None]
    assert "/etc/haproxy/haproxy.cfg loads /var/lib/haproxy/server-state" in \
        checks["router server state"].detail


def test_a_socket_at_operator_level_fails_naming_level_admin_on_the_stats_socket_line() -> None:
    check = readiness(router(ScriptedTransport(level="operator")), ["web"])[0]
    assert check.failed and "level 'operator'" in check.detail
    assert "`level admin` on the `stats socket` line" in check.fix
    assert "stats socket /run/haproxy/admin.sock mode 600 level admin" in check.fix


def test_an_unreachable_socket_is_one_failure_with_its_hint() -> None:
    checks = readiness(router(ScriptedTransport(down=True)), ["web"])
    assert len(checks) == 1 and checks[0].name == "router socket" and checks[0].failed
    assert checks[0].fix == "start HAProxy"


def test_a_map_haproxy_does_not_have_names_the_ones_it_has() -> None:
    check = by_name(ScriptedTransport(maps=("/etc/haproxy/maps/bg.map",)))["router map"]
    assert check.failed
    assert "it has: /etc/haproxy/maps/bg.map" in check.detail
    assert "(/etc/haproxy/maps/bg.map)" in check.fix
    none = by_name(ScriptedTransport(maps=()))["router map"]
    assert "it has: no map at all" in none.detail


def test_server_state_missing_differing_or_unreadable() -> None:
    cmdline = "/usr/sbin/haproxy\0-f\0/etc/haproxy/haproxy.cfg\0"
    missing = ScriptedTransport(files={"/proc/4242/cmdline": cmdline,
                                       "/etc/haproxy/haproxy.cfg": "global\n  maxconn 10\n"})
    check = by_name(missing)["router server state"]
    assert check.failed and "no server-state-file and no load-server-state-from-file" in \
        check.detail
    assert f"`server-state-file {STATE}`" in check.fix
    other = ScriptedTransport(files={"/proc/4242/cmdline": cmdline,
                                     "/etc/haproxy/haproxy.cfg": CFG.replace(STATE, "/tmp/st")})
    check = by_name(other)["router server state"]
    assert check.failed and "set router.server_state_file to /tmp/st" == \
        check.fix
    # another PID namespace: /proc/PID is someone else (or nobody): unknown, never a guess
    elsewhere = ScriptedTransport(files={"/proc/4242/cmdline": "/usr/bin/python3\0-f\0x\0"})
    check = by_name(elsewhere)["router server state"]
    assert check.ok is None and check.fix.startswith("check by hand")


def test_files_a_flip_writes_must_be_in_writable_directories(tmp_path: Path) -> None:
    from orchestrator.routers.haproxy.transport import UnixSocketTransport

    local = UnixSocketTransport(str(tmp_path / "admin.sock"), 1.0)
    settings = HAProxySettings(kind="haproxy", socket=str(tmp_path / "admin.sock"),
                               map_file=str(tmp_path / "bg.map"),
                               server_state_file=str(tmp_path / "nowhere" / "state"))
    check = files_writable(HAProxyRouter(settings, local))
    assert check.failed and f"no directory {tmp_path / 'nowhere'}" in check.detail
    (tmp_path / "nowhere").mkdir()
    assert files_writable(HAProxyRouter(settings, local)).ok is True


def test_exposure_maps_are_unknown_without_steps_and_fail_with_them() -> None:
    """A config without the exposure maps keeps working (unknown, with the lines to add);
    a bake with progressive steps needs them (failed)."""
    bare = router(ScriptedTransport())
    check = exposure_maps(bare, ["web"], required=False)
    assert check.ok is None and "/etc/haproxy/bluegreen.percent.map" in check.detail
    assert "map_str_int(/etc/haproxy/bluegreen.percent.map,0)" in check.fix
    assert "X-Bluegreen-Preview" in check.fix and "use_backend" in check.fix
    assert exposure_maps(bare, ["web"], required=True).failed
    full = router(ScriptedTransport(maps=(MAP, "/etc/haproxy/bluegreen.percent.map",
                                          "/etc/haproxy/bluegreen.exposed.map")))
    assert exposure_maps(full, ["web"], required=True).ok is True
