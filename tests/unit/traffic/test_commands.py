"""What the traffic commands check before they open anything: bad input changes nothing
(no state file), and a side named on the command line needs no router."""

from __future__ import annotations

from pathlib import Path

import pytest

from orchestrator.errors import BadInput
from orchestrator.testing import fake_config
from orchestrator.traffic import fleet_status, operator_move, side_or_default


def test_status_checks_names_and_adopt_arguments_before_opening_the_store(
    tmp_path: Path,
) -> None:
    config = fake_config(tmp_path, ("web", "api"))
    with pytest.raises(BadInput, match="nope"):
        fleet_status(config, "nope", "alice")
    for service, reason in ((None, "INC-1"), ("web", None)):
        with pytest.raises(BadInput, match="--adopt needs a SERVICE and --reason") as err:
            fleet_status(config, service, "alice", adopt_reason=reason, adopt_live=True)
        assert "--adopt --reason" in (err.value.hint or "")
    assert not config.state_path.exists()


def test_a_move_of_an_unknown_service_changes_nothing(tmp_path: Path) -> None:
    config = fake_config(tmp_path)
    with pytest.raises(BadInput, match="wbe"):
        operator_move(config, "wbe", None, "INC-1", "alice", command="rollback")
    assert not config.state_path.exists()


def test_a_side_named_on_the_command_line_needs_no_router(tmp_path: Path) -> None:
    config = fake_config(tmp_path)  # its command router (/bin/false) would fail if asked
    assert side_or_default(config, "web", "green", default="standby") == "green"
    assert side_or_default(config, "web", "blue", default="live") == "blue"
    with pytest.raises(BadInput):
        side_or_default(config, "nope", "blue", default="live")


def test_status_marks_a_rollback_side_that_rollback_would_refuse(tmp_path: Path) -> None:
    """`rollback -> blue (not eligible: ...)`: the gate's own reason, before an incident."""
    from orchestrator.state import AuditEntryInput
    from orchestrator.testing import FakeRouter, temp_store
    from orchestrator.traffic import FlipRequest, move_traffic
    from orchestrator.traffic.status import service_status

    config = fake_config(tmp_path)
    router = FakeRouter({"web": "blue"})
    with temp_store(tmp_path) as store:
        move_traffic(store, router, FlipRequest(service="web", command="flip", reason="t",
                                                actor="alice", to="green", force=True))
        eligible = service_status(config, store, router, "web")
        assert eligible.rollback_to == "blue" and eligible.rollback_refused is None
        assert eligible.as_dict()["rollback_eligible"] is True
        store.begin_patch("web", "blue", "L2", audit=AuditEntryInput(actor="t", command="t"))
        refused = service_status(config, store, router, "web")
        assert refused.rollback_refused is not None
        assert refused.rollback_refused.startswith("it is patching (L2) since ")
        assert refused.as_dict()["rollback_eligible"] is False


def test_status_shows_the_current_step_and_a_store_that_differs(tmp_path: Path) -> None:
    from orchestrator.routers.base import Exposure
    from orchestrator.testing import FakeRouter, temp_store
    from orchestrator.traffic import ExposeRequest, expose_traffic
    from orchestrator.traffic.status import service_status
    from tests.support.kernel import verified

    config = fake_config(tmp_path)
    router = FakeRouter({"web": "blue"})
    with temp_store(tmp_path) as store:
        verified(store, "green")
        expose_traffic(store, router, ExposeRequest(
            service="web", side="green", percent=5, command="rollout.step", reason="t",
            actor="alice"))
        doc = service_status(config, store, router, "web").as_dict()
        step = {"side": "green", "percent": 5, "preview": False}
        assert doc["exposure"] == doc["state_exposure"] == step
        router.exposed["web"] = Exposure("green", 0)  # a hand edit of the maps
        doc = service_status(config, store, router, "web").as_dict()
        assert doc["exposure"]["preview"] and doc["state_exposure"] == step
