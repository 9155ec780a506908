"""What a patch changed: dpkg snapshots, their difference, the level from what is installed,
and the warnings of a run that 'succeeded'."""

from __future__ import annotations

from orchestrator.config.models import PackageSpec
from orchestrator.patching.changes import (
    PackageDelta,
    compare,
    diff,
    installed_level,
    parse_snapshot,
)
from orchestrator.patching.results import HostPatchResult, PatchResult
from orchestrator.patching.step import warnings_for

BEFORE = (
    "demo-openssl\t3.0.11-1\tii \n"
    "demo-web\t1.0.0\tii \n"
    "libssl3:amd64\t3.0.11-1~deb12u1\tii \n"
    "oldpkg\t1.0\trc \n"  # removed, config files left: not installed
    "broken\t2.0\tiF \n"  # half-configured: installed, but says so
)


def ok_result(*hosts: str) -> PatchResult:
    return PatchResult(
        ok=True,
        rc=0,
        status="successful",
        hosts={h: HostPatchResult(ok=True, reached=True) for h in hosts},
        seconds=1.0,
    )


def test_parse_snapshot_keeps_installed_and_half_done_packages() -> None:
    snap = parse_snapshot(BEFORE)
    assert snap == {
        "demo-openssl": "3.0.11-1",
        "demo-web": "1.0.0",
        "libssl3:amd64": "3.0.11-1~deb12u1",
        "broken": "2.0 (half-configured)",
    }


def test_diff_names_upgrades_installs_and_removals() -> None:
    before = {"a": "1", "b": "1", "c": "1"}
    after = {"a": "2", "b": "1", "d": "1"}
    deltas = diff(before, after)
    assert deltas == [
        PackageDelta("a", "1", "2"),
        PackageDelta("c", "1", None),
        PackageDelta("d", None, "1"),
    ]
    assert [str(d) for d in deltas] == ["a 1 -> 2", "c 1 (removed)", "d (new) 1"]


def test_compare_summary_groups_changes_across_hosts() -> None:
    before = {"h1": {"a": "1", "b": "1"}, "h2": {"a": "1", "b": "1"}, "h3": {"a": "1"}}
    after = {"h1": {"a": "2", "b": "1"}, "h2": {"a": "2", "b": "2"}, "h3": {"a": "1"}}
    changes = compare(before, after)
    assert changes.summary() == "2 packages changed on 2 hosts"
    assert changes.changed_hosts == ["h1", "h2"]
    assert changes.lines() == ["a 1 -> 2 (2/3 hosts)", "b 1 -> 2 (1/3 hosts)"]


def test_compare_says_which_hosts_could_not_be_read() -> None:
    changes = compare({"h1": {"a": "1"}, "h2": "no answer within 60 s"}, {"h1": {"a": "2"}})
    assert changes.summary() == "1 package changed on 1 host (not read on h2)"
    assert changes.unread == {"h2": "before: no answer within 60 s"}
    assert changes.as_dict()["hosts"] == {"h1": ["a 1 -> 2"]}


def test_compare_lines_are_capped() -> None:
    before = {"h": {f"p{i:02d}": "1" for i in range(30)}}
    after = {"h": {f"p{i:02d}": "2" for i in range(30)}}
    lines = compare(before, after).lines(limit=5)
    assert len(lines) == 6 and lines[-1] == "... and 25 more"


def test_installed_level_is_what_is_installed() -> None:
    after = {"h1": {"a": "2", "libssl3:amd64": "3"}, "h2": {"a": "2", "libssl3:amd64": "3"}}
    assert installed_level(["libssl3", "a"], after) == "a=2,libssl3=3"
    # hosts that differ, and a package that is not there, are shown as they are
    mixed = {"h1": {"a": "1"}, "h2": {"a": "2"}}
    assert installed_level(["a", "b"], mixed) == "a=1|2,b=none"
    assert installed_level(["a"], {}) is None
    assert installed_level([], after) is None


def test_warns_when_the_playbook_changed_nothing() -> None:
    snap = {"demo-openssl": "3.0.11-1"}
    changes = compare({"h1": snap, "h2": snap}, {"h1": snap, "h2": snap})
    asked = [PackageSpec(name="demo-openssl", version="3.0.15-1")]
    warnings = warnings_for(changes, asked, ok_result("h1", "h2"))
    assert warnings[0].startswith("the playbook changed no package on h1, h2")
    assert warnings[1] == "demo-openssl: asked 3.0.15-1, but h1 has 3.0.11-1; h2 has 3.0.11-1"


def test_warns_about_hosts_left_behind_but_not_about_a_clean_run() -> None:
    old, new = {"a": "1"}, {"a": "2"}
    asked = [PackageSpec(name="a", version="2")]
    partial = compare({"h1": old, "h2": old}, {"h1": new, "h2": old})
    warnings = warnings_for(partial, asked, ok_result("h1", "h2"))
    assert warnings == ["no package changed on h2 (other hosts changed)", "a: asked 2, but h2 has 1"]
    clean = compare({"h1": old, "h2": old}, {"h1": new, "h2": new})
    assert warnings_for(clean, asked, ok_result("h1", "h2")) == []
    failed = ok_result("h1")
    failed.ok = False
    assert warnings_for(partial, asked, failed) == []
