"""CVE evidence per host (before / after / now) and the OpenVEX document, validated against
the OpenVEX JSON schema (tests/data/openvex, vendored from openvex/spec)."""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from orchestrator.errors import BadInput
from orchestrator.evidence.now import advisory_status, cve_evidence
from orchestrator.evidence.openvex import HOST_WORD, openvex, purl

SCHEMA = json.loads(
    (Path(__file__).parents[2] / "data/openvex/openvex_json_schema.json").read_text()
)
OLD, NEW = "3.0.20-1~deb12u2", "3.0.22-1~deb12u2"
ADVISORIES = [
    {"id": f"openssl-{NEW}", "cves": ["CVE-2026-84782", "CVE-2026-35189"], "severity": "high",
     "packages": {"libssl3": NEW, "openssl": NEW}, "applies_to": ["web"]},
    {"id": "demo", "cves": ["CVE-2026-0001"], "packages": {"demo-openssl": "3.0.15-1"},
     "applies_to": None},
]
OLD_V = {"libssl3": OLD, "openssl": OLD}
NEW_V = {"libssl3": NEW, "openssl": NEW}
RECORDED = {h: {"before": OLD_V, "after": NEW_V} for h in ("web-green-1", "web-green-2")}


def _now(live: str) -> dict[str, Any]:
    hosts: dict[str, Any] = {
        f"web-{side}-{n}": {"side": side, "versions": NEW_V if side == "green" else OLD_V}
        for side in ("blue", "green")
        for n in (1, 2)
    }
    hosts["web-blue-2"]["versions"] = {"error": "connection refused"}
    return {"live": live, "at": "2026-12-02T06:00:00+00:00", "hosts": hosts}


def test_advisory_status() -> None:
    pk = {"libssl3": NEW, "openssl": NEW}
    assert advisory_status(pk, OLD_V) == "open"
    assert advisory_status(pk, NEW_V) == "fixed"
    assert advisory_status(pk, {"libssl3": NEW, "openssl": OLD}) == "open"
    assert advisory_status(pk, {"libssl3": "3.1.0-1"}) == "fixed"  # only what is installed
    assert advisory_status(pk, {}) == "not_installed"
    assert advisory_status(pk, None) == "unknown"
    assert advisory_status(pk, {"error": "x"}) == "unknown"


def test_patched_and_live_is_closed() -> None:
    ev = cve_evidence(ADVISORIES, RECORDED, _now("green"), "web", rolled_back=False)
    g1 = {a["id"]: a for a in ev["hosts"]["web-green-1"]["advisories"]}
    assert (g1[f"openssl-{NEW}"]["before"], g1[f"openssl-{NEW}"]["after"],
            g1[f"openssl-{NEW}"]["now"]) == ("open", "fixed", "fixed")
    assert g1["demo"]["now"] == "not_installed"
    b1 = {a["id"]: a for a in ev["hosts"]["web-blue-1"]["advisories"]}
    assert b1[f"openssl-{NEW}"]["before"] is None and b1[f"openssl-{NEW}"]["now"] == "open"
    assert ev["now"]["exposed"] is False
    assert ev["now"]["words"].startswith("web: closed: live side green")
    assert "standby blue still has 2 open" in ev["now"]["words"]


def test_rolled_back_is_exposed_again() -> None:
    ev = cve_evidence(ADVISORIES, RECORDED, _now("blue"), "web", rolled_back=True)
    assert ev["now"]["exposed"] is True
    assert ev["now"]["open_on_live"] == ["CVE-2026-35189", "CVE-2026-84782"]
    assert "EXPOSED again (rolled back to the unpatched side)" in ev["now"]["words"]


def test_unknown_now() -> None:
    ev = cve_evidence(ADVISORIES, RECORDED, None, "web", rolled_back=False)
    assert ev["now"]["exposed"] is None and "unknown" in ev["now"]["words"]


def _report(live: str, rolled_back: bool) -> dict[str, Any]:
    return {
        "campaign": "security-20261202",
        "run_id": "campaign-20261202T060000-1",
        "generated_at": "2026-12-02T06:00:05+00:00",
        "actor": "root",
        "audit": {"ok": True, "records": 42, "head_hash": "ab" * 32},
        "services": {"web": {"cves": cve_evidence(ADVISORIES, RECORDED, _now(live), "web",
                                                  rolled_back)}},
    }


@pytest.mark.parametrize(("live", "rolled_back"), [("green", False), ("blue", True)])
def test_openvex_validates_against_the_schema(live: str, rolled_back: bool) -> None:
    doc = openvex(_report(live, rolled_back))
    jsonschema.Draft202012Validator(SCHEMA).validate(doc)
    assert doc["@context"] == "https://openvex.dev/ns/v0.2.0"
    assert f"42:{'ab' * 32}" in doc["tooling"]
    for st in doc["statements"]:
        datetime.fromisoformat(st["timestamp"])
    by = {(st["vulnerability"]["name"], st["products"][0]["@id"]): st for st in doc["statements"]}
    fixed = by[("CVE-2026-84782", "urn:bluegreen:host:web-green-1")]
    assert fixed["status"] == "fixed"
    assert fixed["products"][0]["subcomponents"][0]["identifiers"]["purl"] == purl("libssl3", NEW)
    blue = by[("CVE-2026-84782", "urn:bluegreen:host:web-blue-1")]
    assert blue["status"] == "affected"
    assert ("takes traffic now" in blue["action_statement"]) == (live == "blue")
    assert by[("CVE-2026-84782", "urn:bluegreen:host:web-blue-2")]["status"] == (
        "under_investigation")
    assert by[("CVE-2026-0001", "urn:bluegreen:host:web-green-1")]["justification"] == (
        "component_not_present")
    assert len(doc["statements"]) == 4 * 3  # one per CVE and host


def test_every_statement_says_it_rests_on_the_hosts_word() -> None:
    """Root on a host can make dpkg say anything: `fixed` (and every other status) says
    in its status_notes that it is the host's own package database speaking."""
    doc = openvex(_report("green", False))
    assert doc["statements"]
    for st in doc["statements"]:
        assert st["status_notes"].endswith(HOST_WORD), st
    assert "own package database" in HOST_WORD and "root on the host" in HOST_WORD


def test_schema_catches_a_broken_document() -> None:
    doc = openvex(_report("green", False))
    doc["statements"][0]["status"] = "patched"
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.Draft202012Validator(SCHEMA).validate(doc)


def test_purl_encodes_epochs() -> None:
    assert purl("zlib1g", "1:1.2.13.dfsg-1+deb12u1") == (
        "pkg:deb/debian/zlib1g@1%3A1.2.13.dfsg-1%2Bdeb12u1")
    assert purl("libssl3", NEW) == f"pkg:deb/debian/libssl3@{NEW}"


def test_no_cve_no_document() -> None:
    doc = _report("green", False)
    doc["services"]["web"]["cves"]["hosts"] = {}
    with pytest.raises(BadInput, match="names no CVE"):
        openvex(doc)
