"""The lab's shape: 25 hosts per side and several services fit; bad sizes are exit 2."""

from __future__ import annotations

import pytest
from click.testing import CliRunner

from orchestrator.cli import main
from orchestrator.errors import BadInput
from orchestrator.lab.lab import MAX_HOSTS, LabShape


def test_25_hosts_per_side_with_two_services_is_a_valid_lab() -> None:
    shape = LabShape(("web", "api"), 25)
    shape.validate()
    specs = shape.host_specs("10.231.4")
    assert len(specs) == 100
    assert specs[-1].address == "10.231.4.110"
    assert len({s.address for s in specs}) == 100


def test_too_many_hosts_in_all_is_refused_naming_the_limit() -> None:
    with pytest.raises(BadInput) as info:
        LabShape(("web", "api", "db"), 40).validate()  # 240 hosts
    assert "240 hosts" in info.value.message
    assert f"at most {MAX_HOSTS} hosts" in (info.value.hint or "")
    # the highest address stays inside the lab's /24
    biggest = LabShape(("web", "api", "db", "dns"), 25).host_specs("10.231.4")
    assert int(biggest[-1].address.rsplit(".", 1)[1]) <= 254


def test_cli_refuses_hosts_per_side_out_of_range_with_exit_2() -> None:
    out = CliRunner().invoke(main, ["lab", "up", "--hosts-per-side", "51"])
    assert out.exit_code == 2
    assert "--hosts-per-side" in out.output and "1<=x<=50" in out.output
