"""`watch`, `quarantine`, `rebuild`: findings in words, which deviations quarantine, bad
input."""

from __future__ import annotations

import json
from pathlib import Path
from typing import get_args

import pytest
from click.testing import CliRunner

from orchestrator.baseline.watch import findings_in_words, quarantine_kinds
from orchestrator.cli.app import main
from orchestrator.config.models import FingerprintKind
from orchestrator.probes.drift import KINDS, Difference, DriftReport
from orchestrator.testing import fake_config


def report() -> DriftReport:
    return DriftReport(
        ("b1", "b2"),
        [Difference("b1", "authorized-key", "root SHA256:abc", None, "ED25519 256", "baseline"),
         Difference("b1", "user", "eve", None, "uid=0 gid=0 home=/ shell=/bin/sh", "baseline")],
        {"b2": "no answer within 60 s"},
    )


def test_findings_name_host_item_and_unreadable_hosts() -> None:
    assert findings_in_words(report()) == {
        "b2": ["cannot be read: no answer within 60 s"],
        "b1": ["authorized_keys of root +1 key (SHA256:abc)",
               "user eve added (uid=0 gid=0 home=/ shell=/bin/sh)"],
    }


def test_only_named_kinds_quarantine() -> None:
    assert quarantine_kinds(report(), ["authorized-key", "setuid"]) == ["authorized-key"]
    assert quarantine_kinds(report(), ["listener"]) == []


def test_the_config_knows_every_fingerprint_kind() -> None:
    assert set(get_args(FingerprintKind)) == set(KINDS)


def _config(tmp_path: Path, **watch: object) -> Path:
    fake_config(tmp_path)
    path = tmp_path / "bluegreen.yml"
    doc = json.loads(path.read_text())
    if "rebuild" in watch:
        doc["services"]["web"]["patch"]["rebuild_playbook"] = watch.pop("rebuild")
    doc["services"]["web"]["watch"] = watch
    path.write_text(json.dumps(doc))
    return path


@pytest.mark.parametrize(("args", "watch", "says"), [
    (["watch", "web", "--interval", "0"], {}, "--interval 0: out of range"),
    (["watch", "web", "--once", "--quarantine"], {}, "quarantine_on names no kind"),
    (["watch", "nope", "--once"], {}, "nope"),
    (["watch", "web", "--once"], {"quarantine_on": ["root-key"]}, "quarantine_on"),
    (["watch", "web", "--once"], {"webhooks": ["ftp://x"]}, "http:// or https://"),
    (["watch", "web", "--once"], {}, "baseline file not found"),
    (["quarantine", "web", "--side", "blue", "--reason", " "], {}, "--reason is empty"),
    (["quarantine", "web", "--side", "red", "--reason", "x"], {}, "red"),
    (["rebuild", "web", "--side", "blue", "--reason", "x"], {},
     "services.web.patch.rebuild_playbook is not set"),
    (["rebuild", "web", "--side", "blue", "--reason", "x"], {"rebuild": "nope.yml"},
     "playbook 'nope.yml' not found"),
    (["rebuild", "web", "--side", "blue", "--reason", ""], {"rebuild": "patch.yml"},
     "--reason is empty"),
])
def test_bad_input_is_one_clear_error_and_exit_2(
    tmp_path: Path, args: list[str], watch: dict[str, object], says: str
) -> None:
    cfg = _config(tmp_path, **watch)
    result = CliRunner().invoke(main, ["-c", str(cfg), *args])
    assert result.exit_code == 2, result.output
    assert says in result.output, result.output
    assert not (tmp_path / "state").exists()  # nothing changed, not even a store
