"""A new team adopts bluegreen, as the README's "Adopt it on your fleet" says: a
handwritten INI inventory with group_vars and a handwritten haproxy.cfg (its own HAProxy, a
socket at `level operator`, `default_backend`, no map yet) go through `bluegreen init`; the
printed diff is applied (the map installed, the adapted config started); `doctor` passes; a
rollout and a rollback work through that HAProxy. The lab's web hosts play the team's
`shop` hosts; the lab's own HAProxy and store are not used."""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from orchestrator.lab.lab import Lab
from tests.support.cli import bluegreen, bluegreen_json
from tests.support.haproxy_fixture import HAPROXY, free_port, wait_until

pytestmark = [pytest.mark.lab, pytest.mark.destructive]

HAPROXY_CFG = """\
global
    stats socket {dir}/admin.sock mode 600 level operator
    log stderr format raw local0 warning

defaults
    mode http
    timeout connect 2s
    timeout client 30s
    timeout server 30s

frontend shop
    bind 127.0.0.1:{port}
    default_backend shop_blue

backend shop_blue
    option httpchk GET /health
{blue}

backend shop_green
    option httpchk GET /health
{green}
"""


@pytest.fixture
def team(lab: Lab, tmp_path: Path) -> Iterator[Path]:
    hosts = [h for h in lab.status()["hosts"] if h["service"] == "web"]
    (tmp_path / "inv" / "group_vars").mkdir(parents=True)
    lines = []
    for side in ("blue", "green"):
        lines.append(f"[shop_{side}]")
        lines += [f"{h['name']} ansible_host={h['address']}" for h in hosts if h["side"] == side]
        lines.append("")
    (tmp_path / "inv" / "hosts.ini").write_text("\n".join(lines))
    (tmp_path / "inv" / "group_vars" / "all.yml").write_text(yaml.safe_dump({
        "ansible_user": "root", "ansible_python_interpreter": "/usr/bin/python3",
        "ansible_ssh_private_key_file": str(lab.paths.client_key)}))
    servers = {side: "\n".join(f"    server {h['name']} {h['address']}:8080 check inter 1s"
                               for h in hosts if h["side"] == side)
               for side in ("blue", "green")}
    (tmp_path / "haproxy").mkdir()
    (tmp_path / "haproxy" / "haproxy.cfg").write_text(HAPROXY_CFG.format(
        dir=tmp_path / "haproxy", port=free_port(), **servers))
    yield tmp_path
    lab.reset([h["name"] for h in hosts if h["side"] == "green"])


def test_init_doctor_rollout_rollback_on_a_handwritten_setup(lab: Lab, team: Path) -> None:
    out = team / "out"
    lb_dir = team / "haproxy"
    proc = subprocess.run(
        [*bluegreen_cmd(), "init", "--inventory", str(team / "inv" / "hosts.ini"),
         "--haproxy-cfg", str(lb_dir / "haproxy.cfg"), "--known-hosts",
         str(lab.paths.known_hosts), "--private-key-file", str(lab.paths.client_key),
         "--map-file", str(lb_dir / "bluegreen.map"),
         "-o", str(out / "bluegreen.yml")],
        capture_output=True, text=True, timeout=120, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "+    use_backend %[str(shop)" in proc.stdout and "level admin" in proc.stdout
    # the README's next steps: install the map, then start HAProxy with the adapted config
    # (init prints an `install` line for each of the three maps it wrote)
    for name in ("bluegreen.map", "bluegreen.percent.map", "bluegreen.exposed.map"):
        assert f"install -m 644 {out / name} {lb_dir / name}" in proc.stdout, proc.stdout
        shutil.copy(out / name, lb_dir / name)
    assert (lb_dir / "bluegreen.map").read_text() == "shop shop_blue\n"
    haproxy = subprocess.Popen([HAPROXY, "-W", "-db", "-f", str(out / "haproxy.cfg.bluegreen")],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                               start_new_session=True)
    try:
        config = out / "bluegreen.yml"
        doc = yaml.safe_load(config.read_text())
        frontend = doc["router"]["frontends"]["shop"]
        wait_until(lambda: side_of(frontend) == "blue", 20, "the team's HAProxy to serve blue")
        # step 8 of the README: health checks and the packages to patch
        doc["services"]["shop"]["health"] = [{"url": "http://{host}:8080/health"}]
        doc["services"]["shop"]["patch"] = {"packages": [{"name": "demo-web",
                                                          "version": "1.0.1"}]}
        doc["audit"] = {"witness": {"file": str(team / "witness.log")}}
        config.write_text(yaml.safe_dump(doc, sort_keys=False))
        code, report = bluegreen_json(config, "doctor", "shop", timeout=180)
        assert code == 0, json.dumps(report, indent=1)
        rollout = bluegreen(config, "rollout", "shop", "--yes", timeout=600)
        assert rollout.returncode == 0, rollout.stdout + rollout.stderr
        assert side_of(frontend) == "green"
        assert (lb_dir / "bluegreen.map").read_text().split() == ["shop", "shop_green"]
        back = bluegreen(config, "rollback", "shop", "--reason", "adoption test")
        assert back.returncode == 0, back.stdout + back.stderr
        assert side_of(frontend) == "blue"
        audit = bluegreen(config, "audit", "verify")
        assert audit.returncode == 0, audit.stdout + audit.stderr
    finally:
        haproxy.send_signal(signal.SIGTERM)
        haproxy.wait(timeout=10)


def bluegreen_cmd() -> list[str]:
    from tests.support.cli import BLUEGREEN

    return list(BLUEGREEN)


def side_of(frontend: str) -> str:
    with urllib.request.urlopen(frontend.rstrip("/") + "/version", timeout=5) as reply:
        return str(json.loads(reply.read())["side"])
