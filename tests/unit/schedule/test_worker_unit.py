"""`bluegreen worker --site S --install-unit`: the systemd unit of a site's worker (its
text, verified by systemd-analyze), never overwritten silently, refused for a SQLite store
or a site without services."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

from click.testing import CliRunner, Result

from orchestrator.cli import main
from orchestrator.schedule.worker_unit import render_unit, worker_command
from orchestrator.testing import fake_config


def team_config(tmp_path: Path, state: dict[str, str] | None = None) -> Path:
    fake_config(tmp_path, ("web", "api"))
    path = tmp_path / "bluegreen.yml"
    doc = json.loads(path.read_text())
    doc["state"] = state or {"url": "postgresql://bluegreen@db.example/bluegreen"}
    doc["sites"] = {"dc2": {"max_parallel": 2}}
    doc["services"]["api"]["site"] = "dc2"
    path.write_text(json.dumps(doc))
    return path


def install(config: Path, units: Path, *args: str) -> Result:
    return CliRunner().invoke(main, ["-c", str(config), "worker", "--site", "dc2",
                                     "--install-unit", "--dir", str(units), *args])


def test_the_unit_runs_the_worker_restarts_it_and_lets_rollouts_end(tmp_path: Path) -> None:
    config = team_config(tmp_path)
    units = tmp_path / "units"
    units.mkdir()
    out = install(config, units, "--max-parallel", "3")
    assert out.exit_code == 0, out.output
    unit = units / "bluegreen-worker@dc2.service"
    text = unit.read_text()
    lines = text.splitlines()
    [exec_start] = [ln for ln in lines if ln.startswith("ExecStart=")]
    assert exec_start.endswith(f" -c {config.resolve()} worker --site dc2 --max-parallel 3")
    assert exec_start.split("=", 1)[1].split()[0].startswith("/")  # an absolute program
    for line in ("Type=simple", "Restart=on-failure", "KillMode=mixed", "KillSignal=SIGTERM",
                 "TimeoutStopSec=2h", "WantedBy=multi-user.target"):
        assert line in lines, line
    assert unit.stat().st_mode & 0o777 == 0o644
    assert f"wrote {unit}" in out.output and "systemd-analyze verify: ok" in out.output
    assert ("enable: systemctl daemon-reload && systemctl enable --now "
            "bluegreen-worker@dc2.service") in out.output
    verified = subprocess.run(["systemd-analyze", "verify", str(unit)], capture_output=True,
                              text=True, check=False)
    assert verified.returncode == 0, verified.stdout + verified.stderr
    assert text == render_unit("dc2", worker_command(config, "dc2", 3))

    again = install(config, units, "--max-parallel", "3")  # the same unit: left as it is
    assert again.exit_code == 0 and f"unchanged {unit}" in again.output


def test_a_different_unit_is_never_overwritten_silently(tmp_path: Path) -> None:
    config = team_config(tmp_path)
    units = tmp_path / "units"
    units.mkdir()
    assert install(config, units).exit_code == 0
    unit = units / "bluegreen-worker@dc2.service"
    before = unit.read_text()
    refused = install(config, units, "--max-parallel", "4")
    assert refused.exit_code == 2, refused.output
    assert "exists and differs" in refused.output and "--replace" in refused.output
    assert unit.read_text() == before
    dry = install(config, units, "--max-parallel", "4", "--dry-run")
    assert dry.exit_code == 0, dry.output
    assert "--max-parallel 4" in dry.output and "dry run: not written" in dry.output
    assert unit.read_text() == before
    replaced = install(config, units, "--max-parallel", "4", "--replace", "--json")
    assert replaced.exit_code == 0, replaced.output
    assert json.loads(replaced.output)["written"] is True
    assert "--max-parallel 4" in unit.read_text()


def test_refused_without_the_shared_store_or_the_site_or_install_unit(tmp_path: Path) -> None:
    units = tmp_path / "units"
    units.mkdir()
    (tmp_path / "lite").mkdir()
    lite = team_config(tmp_path / "lite", {"path": str(tmp_path / "state.db")})
    out = install(lite, units)
    assert out.exit_code == 2 and "needs the shared PostgreSQL store" in out.output
    config = team_config(tmp_path)
    unknown = CliRunner().invoke(main, ["-c", str(config), "worker", "--site", "dc9",
                                        "--install-unit", "--dir", str(units)])
    assert unknown.exit_code == 2 and "site 'dc9' has no services" in unknown.output
    alone = CliRunner().invoke(main, ["-c", str(config), "worker", "--site", "dc2",
                                      "--dry-run"])
    assert alone.exit_code == 2 and "go with --install-unit" in alone.output
    assert list(units.iterdir()) == []
