"""The nginx router on the lab (`lab up --router nginx`): a second, small lab (one service,
one host per side) with nginx in front, as the README tells users to configure it; the same
scenarios as HAProxy's: a rollout flips, the flip survives a reload, a rollback is one flip
back, a patch that hurts users is rolled back by the bake, the audit chain verifies.

It runs beside the session's HAProxy lab, as lab instance (session instance + 5) % 10
(BLUEGREEN_LAB_NGINX_INSTANCE overrides), and is taken down at the end."""

from __future__ import annotations

import json
import os
import urllib.request
from collections.abc import Iterator
from dataclasses import replace

import pytest

from orchestrator.lab.lab import Lab, LabShape
from orchestrator.lab.paths import MAX_INSTANCES, LabPaths
from tests.support.cli import bluegreen

pytestmark = [pytest.mark.lab, pytest.mark.destructive]


@pytest.fixture(scope="module")
def nginx_lab() -> Iterator[Lab]:
    base = LabPaths.default()
    raw = os.environ.get("BLUEGREEN_LAB_NGINX_INSTANCE")
    instance = int(raw) if raw else (base.instance + 5) % MAX_INSTANCES
    suffix = "" if instance == 0 else str(instance)
    paths = replace(base, instance=instance, root=base.root.with_name(f"bluegreen-lab{suffix}"))
    the_lab = Lab(paths)
    try:
        the_lab.up(LabShape(("web",), 1, None, "nginx"))
    except Exception as exc:  # noqa: BLE001 - report any failure loudly
        the_lab.down()
        pytest.fail(f"the nginx lab could not start: {exc}", pytrace=False)
    try:
        yield the_lab
    finally:
        result = the_lab.down()
        assert not result["leftovers"], result


def served_by(lab: Lab) -> tuple[str, str]:
    """(the upstream named by the confirm header, the side that answered)."""
    url = lab.status()["frontends"]["web"] + "/version"
    with urllib.request.urlopen(url, timeout=5) as reply:
        return str(reply.headers["X-Bluegreen-Backend"]), str(json.loads(reply.read())["side"])


def test_rollout_reload_rollback_and_bake_on_nginx(nginx_lab: Lab) -> None:
    lab = nginx_lab
    config = lab.paths.config
    status = lab.status()
    assert status["router"] == "nginx" and served_by(lab) == ("web_blue", "blue")
    doctor = bluegreen(config, "doctor", "web", "--json", timeout=300)
    assert doctor.returncode == 0, doctor.stdout + doctor.stderr
    names = {c["name"] for c in json.loads(doctor.stdout)["checks"]}
    assert {"router config", "router live file", "router include", "router confirm header",
            "router access log", "router master pid"} <= names, names
    rollout = bluegreen(config, "rollout", "web", "--yes", timeout=600)
    assert rollout.returncode == 0, rollout.stdout + rollout.stderr
    assert served_by(lab) == ("web_green", "green")
    assert "default web_green;" in open(status["live_file"]).read()
    lab.reload_nginx()  # the flip is the config: a reload keeps it
    assert served_by(lab) == ("web_green", "green")
    back = bluegreen(config, "rollback", "web", "--reason", "nginx lab test")
    assert back.returncode == 0, back.stdout + back.stderr
    assert served_by(lab) == ("web_blue", "blue")
    # the patch that fails real requests after a while (demo-web 1.1.1): the bake sees the
    # users' 5xx through nginx and rolls back by itself (exit 4); traffic stays on blue
    lab.reset(["web-green-1"])
    bad = bluegreen(config, "rollout", "web", "--package", "demo-openssl=3.0.15-1",
                    "--package", "demo-web=1.1.1", "--yes", timeout=600)
    assert bad.returncode == 4, bad.stdout + bad.stderr
    assert served_by(lab) == ("web_blue", "blue")
    audit = bluegreen(config, "audit", "verify")
    assert audit.returncode == 0, audit.stdout + audit.stderr
