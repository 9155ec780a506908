"""The command router against a small real script that speaks the protocol."""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from threading import Thread
from typing import Any

import pytest

from orchestrator.errors import FlipIncomplete, RouterError
from orchestrator.routers.command.router import CommandRouter
from orchestrator.routers.command.settings import CommandRouterSettings
from orchestrator.routers.registry import make_router

# The script keeps the live side in a file next to itself; MODE (a file too) makes it
# misbehave in the ways the router must catch.
SCRIPT = """\
#!{python}
import json, os, sys, time
from pathlib import Path

here = Path(__file__).parent
mode = (here / "MODE").read_text().strip() if (here / "MODE").exists() else "good"
state = here / "live"
action, service = sys.argv[1], sys.argv[2]
side = sys.argv[3] if len(sys.argv) > 3 else None
(here / "calls").open("a").write(json.dumps({{
    "argv": sys.argv[1:],
    "env": {{k: v for k, v in os.environ.items() if k in ("BLUEGREEN_ACTION", "BLUEGREEN_SERVICE", "BLUEGREEN_SIDE", "BLUEGREEN_DEADLINE_S")}},
}}) + "\\n")

if mode == "fail":
    print("lb said no: backend missing", file=sys.stderr)
    sys.exit(3)
if mode == "garbage":
    print("flipped!")
    sys.exit(0)
if mode == "two":
    print('{{"ok": true}}\\n{{"ok": true}}')
    sys.exit(0)
if mode == "slow":
    print("thinking", file=sys.stderr, flush=True)
    time.sleep(30)
if mode == "slowchild":
    import subprocess
    subprocess.Popen(["sleep", "30"])  # inherits our stdout/stderr pipes
    time.sleep(30)
if mode == "refuse":
    print(json.dumps({{"ok": False, "error": "green pool is empty"}}))
    sys.exit(0)

if action == "live":
    print(json.dumps({{"live": state.read_text().strip() if state.exists() else "blue"}}))
elif action == "flip":
    state.write_text(side)
    if mode == "unpersisted":
        print(json.dumps({{"ok": True, "persisted": False}}))
    else:
        print(json.dumps({{"ok": True, "confirmed_by": ["request"]}}))
elif action == "counters" and mode == "badcounters":
    print(json.dumps({{"responses": -1, "errors_5xx": "many"}}))
elif action == "counters":
    print(json.dumps({{"responses": 120 if side == "green" else 7, "errors_5xx": 3}}))
elif action == "drain":
    print(json.dumps({{"ok": True, "sessions_left": 2}}))
elif action == "health":
    print(json.dumps({{"servers": [
        {{"name": service + "1", "status": "UP", "check_status": "L7OK"}},
        {{"name": service + "2", "status": "DOWN"}},
    ]}}))
else:
    sys.exit(2)
"""


@pytest.fixture
def script(tmp_path: Path) -> Path:
    path = tmp_path / "lb-switch"
    path.write_text(SCRIPT.format(python=sys.executable))
    path.chmod(0o755)
    return path


def router_for(script: Path, timeout: float = 10.0, **settings: Any) -> CommandRouter:
    made = make_router(CommandRouterSettings(kind="command", script=str(script), timeout=timeout,
                                             **settings))
    assert isinstance(made, CommandRouter)
    return made


def set_mode(script: Path, mode: str) -> None:
    (script.parent / "MODE").write_text(mode)


def calls(script: Path) -> list[dict[str, object]]:
    lines = (script.parent / "calls").read_text().splitlines()
    return [json.loads(line) for line in lines]


def test_good_replies(script: Path) -> None:
    router = router_for(script)
    assert router.live("web") == "blue"

    result = router.flip("web", "green")
    assert result.to_side == "green"
    assert result.confirmed_by == ["request"]
    assert result.persisted
    assert router.live("web") == "green"

    drained = router.drain("web", "blue", deadline_s=1.5)
    assert drained.sessions_left == 2 and not drained.drained

    health = router.health("web", "green")
    assert [(s.name, s.status, s.up) for s in health.servers] == [
        ("web1", "UP", True),
        ("web2", "DOWN", False),
    ]
    assert health.servers[0].check_status == "L7OK"
    assert health.healthy
    router.close()


def test_argv_and_environment(script: Path) -> None:
    router = router_for(script)
    router.live("web")
    router.flip("web", "green")
    router.drain("web", "blue", deadline_s=4)
    seen = calls(script)
    assert [c["argv"] for c in seen] == [
        ["live", "web"],
        ["flip", "web", "green"],
        ["drain", "web", "blue"],
    ]
    assert seen[1]["env"] == {
        "BLUEGREEN_ACTION": "flip",
        "BLUEGREEN_SERVICE": "web",
        "BLUEGREEN_SIDE": "green",
    }
    assert seen[2]["env"] == {
        "BLUEGREEN_ACTION": "drain",
        "BLUEGREEN_SERVICE": "web",
        "BLUEGREEN_SIDE": "blue",
        "BLUEGREEN_DEADLINE_S": "4",
    }


def test_service_name_is_not_shell_interpreted(script: Path, tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    router = router_for(script)
    router.live(f"web; touch {marker}")
    assert not marker.exists()
    assert calls(script)[0]["argv"] == ["live", f"web; touch {marker}"]


def test_nonzero_exit_raises_with_stderr(script: Path) -> None:
    set_mode(script, "fail")
    with pytest.raises(RouterError, match=r"exited 3(.|\n)*lb said no: backend missing"):
        router_for(script).flip("web", "green")


def test_garbage_stdout_raises(script: Path) -> None:
    set_mode(script, "garbage")
    with pytest.raises(RouterError, match="did not print exactly one JSON object"):
        router_for(script).live("web")


def test_two_json_objects_raise(script: Path) -> None:
    set_mode(script, "two")
    with pytest.raises(RouterError, match="exactly one JSON object"):
        router_for(script).flip("web", "green")


def test_refusal_is_passed_on(script: Path) -> None:
    set_mode(script, "refuse")
    with pytest.raises(RouterError, match="green pool is empty"):
        router_for(script).flip("web", "green")


def test_wrong_shape_raises(script: Path) -> None:
    router = router_for(script)
    (script.parent / "live").write_text("purple")
    with pytest.raises(RouterError, match="expected"):
        router.live("web")


def test_timeout_kills_the_script(script: Path) -> None:
    set_mode(script, "slow")
    started = time.monotonic()
    with pytest.raises(RouterError, match=r"did not finish within 0.5 s"):
        router_for(script, timeout=0.5).live("web")
    assert time.monotonic() - started < 5


def test_missing_or_not_executable_script(tmp_path: Path) -> None:
    with pytest.raises(RouterError, match="cannot be run"):
        router_for(tmp_path / "nope").live("web")
    plain = tmp_path / "plain"
    plain.write_text("#!/bin/sh\necho '{}'\n")
    os.chmod(plain, 0o644)
    with pytest.raises(RouterError, match="cannot be run"):
        router_for(plain).live("web")


def test_timeout_also_kills_the_scripts_children(script: Path) -> None:
    set_mode(script, "slowchild")
    started = time.monotonic()
    with pytest.raises(RouterError, match="did not finish"):
        router_for(script, timeout=0.5).live("web")
    assert time.monotonic() - started < 5


# -- counters, persistence, confirmation (issue 10) -------------------------------------------


def test_counters_only_when_declared(script: Path) -> None:
    assert router_for(script).counters("web", "green") is None
    assert not (script.parent / "calls").exists()  # not even asked
    counted = router_for(script, counters=True).counters("web", "green")
    assert counted is not None and (counted.responses, counted.errors_5xx) == (120, 3)
    assert calls(script)[-1]["argv"] == ["counters", "web", "green"]
    set_mode(script, "badcounters")
    with pytest.raises(RouterError, match="non-negative integers"):
        router_for(script, counters=True).counters("web", "green")


def test_unpersisted_flip_is_incomplete_unless_allowed(script: Path) -> None:
    set_mode(script, "unpersisted")
    router = router_for(script)
    with pytest.raises(FlipIncomplete) as caught:
        router.flip("web", "green")
    assert caught.value.moved and not caught.value.persisted
    assert caught.value.hint is not None and "allow_unpersisted" in caught.value.hint
    assert router.live("web") == "green"  # traffic did move
    result = router_for(script, allow_unpersisted=True).flip("web", "blue")
    assert not result.persisted and result.to_side == "blue"


@pytest.fixture
def frontend(script: Path) -> Iterator[str]:
    """A frontend answering with the header of the side the script routes to (or, with a
    file `LIE` next to the script, always blue)."""
    here = script.parent

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 - http.server's naming
            live = (here / "live").read_text().strip() if (here / "live").exists() else "blue"
            self.send_response(200)
            self.send_header("X-Bluegreen-Backend",
                             "web_blue" if (here / "LIE").exists() else f"web_{live}")
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}/"
    server.shutdown()
    server.server_close()


def test_a_frontend_confirms_the_flip(script: Path, frontend: str) -> None:
    router = router_for(script, frontends={"web": frontend})
    assert router.flip("web", "green").confirmed_by == ["request", "request"]
    (script.parent / "LIE").write_text("")
    with pytest.raises(FlipIncomplete) as caught:
        router.flip("web", "green")
    assert caught.value.persisted and not caught.value.confirmed
    assert "web_blue" in caught.value.message


def test_the_script_gets_the_minimal_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """bluegreen's secrets (PGPASSWORD, its tokens) never reach the script; `pass_env`
    names what it needs."""
    monkeypatch.setenv("PGPASSWORD", "s3cret-pg")
    monkeypatch.setenv("BLUEGREEN_DASHBOARD_TOKEN", "s3cret-dash")
    monkeypatch.setenv("LB_API_TOKEN", "lb-t0ken")
    dump = tmp_path / "env.txt"
    script = tmp_path / "dump-env"
    script.write_text(f"#!/bin/sh\nenv > {dump}\necho '{{\"live\": \"blue\"}}'\n")
    script.chmod(0o755)
    assert router_for(script).live("web") == "blue"
    seen = dump.read_text()
    assert "s3cret" not in seen and "lb-t0ken" not in seen, seen
    assert "BLUEGREEN_ACTION=live" in seen and "PATH=" in seen
    assert router_for(script, pass_env=["LB_API_TOKEN"]).live("web") == "blue"
    seen = dump.read_text()
    assert "LB_API_TOKEN=lb-t0ken" in seen and "s3cret" not in seen, seen


def test_pass_env_must_name_variables() -> None:
    from orchestrator.routers.settings import SettingError

    with pytest.raises(SettingError) as info:
        CommandRouterSettings(kind="command", script="/bin/true", pass_env=["A=B"])
    assert info.value.field == "router.pass_env" and info.value.fix
