"""Issue 21 item 8 on the lab: one host answers a version that passes the syntax check but
python-debian (which compares versions) rejects (`1.0-1:2`, and `z:1` as a source version).
`exposure` and `campaign new` judge the whole fleet as usual and say "not read" for that
one package, naming the host; before, both died with a traceback (exit 1)."""

from __future__ import annotations

from pathlib import Path

import pytest

from orchestrator.lab.lab import Lab
from tests.support.cli import bluegreen, bluegreen_json
from tests.support.lab import hosts_of

pytestmark = pytest.mark.lab

FAKE = "/usr/local/bin/dpkg-query"
FAKE_DPKG_QUERY = """#!/bin/sh
/usr/bin/dpkg-query "$@" || exit $?
case "$*" in
  *source:Package*) printf 'ii \\tlibodd1\\t1.0-1:2\\todd\\tz:1\\n' ;;
esac
"""


def test_an_unreadable_version_from_one_host_is_not_read(lab: Lab, tmp_path: Path) -> None:
    liar = hosts_of(lab, "web", "blue")[0]
    script = FAKE_DPKG_QUERY.replace("'", "'\\''")
    lab.exec(liar, ["sh", "-c", f"printf '%s' '{script}' > {FAKE} && chmod 755 {FAKE}"])
    try:
        code, doc = bluegreen_json(lab.paths.config, "exposure", "web", timeout=600)
        assert code == 3, doc  # the fleet is judged: web's hosts have open CVEs
        note = f"{liar}: not read: package 'libodd1': version '1.0-1:2'"
        assert any(n.startswith(note) for n in doc["notes"]), doc["notes"]
        hosts = {h["host"]: h for s in doc["services"]["web"]["sides"].values()
                 for h in s["hosts"]}
        assert hosts[liar]["error"] is None and hosts[liar]["open"], hosts[liar]
        assert {c["source"] for c in hosts[liar]["open"]} == {
            c["source"] for c in hosts[hosts_of(lab, "web", "blue")[1]]["open"]}

        made = tmp_path / "campaign.yml"
        proc = bluegreen(lab.paths.config, "campaign", "new", "--services", "web", "-o",
                         str(made), timeout=600)
        assert proc.returncode == 0, proc.stdout + proc.stderr
        assert "Traceback" not in proc.stderr and f"note: {note}" in proc.stderr, proc.stderr
        assert made.is_file() and "libodd1" not in made.read_text()
    finally:
        lab.exec(liar, ["rm", "-f", FAKE])
