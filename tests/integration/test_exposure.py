"""Issue 12 end to end on the lab, with the real Debian security updates of the lab's
`bookworm-security` suite and the CVEs their real changelogs name:

`exposure` lists the libssl3 CVEs on both sides of web; `campaign new` turns what is open
into a campaign file; `campaign run` patches the standby, whose gate also requires "no CVE
open at or above high" (the `cves` check), verifies and flips; `exposure` then shows the
live side clean and the old side still exposed; the report says per host before / after /
now, and its OpenVEX form validates against the OpenVEX schema; after `rollback`, report
and `exposure` say web is exposed again.

The dashboard (`serve`, its JSON API and /metrics) shows each side's newest measurement
with its age, marks a side patched after it as outdated, and follows the next `exposure`;
the HTML report of the campaign shows the CVE table per host in Chromium."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml
from selenium.webdriver.common.by import By

from orchestrator.advisories import versions
from orchestrator.advisories.changelog import read_changelog
from orchestrator.campaign.model import load_campaign, packages_for
from orchestrator.lab.lab import Lab
from tests.integration.test_views import get, metric_values, screenshot, served, wait_for
from tests.support.browser import chromium
from tests.support.cli import bluegreen, bluegreen_json
from tests.support.lab import hosts_of, no_steps_config

__all__ = ["served"]  # the `serve` fixture of test_views, on this test's fresh lab

pytestmark = pytest.mark.lab

SCHEMA = json.loads(
    (Path(__file__).parents[1] / "data/openvex/openvex_json_schema.json").read_text()
)


def _ssl_cves_in_the_real_changelog(lab: Lab, installed: str) -> set[str]:
    """The CVEs libssl3's changelog (in the .deb the lab repository serves) names in the
    entries newer than what the hosts have."""
    (deb,) = (lab.paths.repo / "bookworm-security").glob("libssl3_*.deb")
    entries = read_changelog(deb, "libssl3", str(deb)) or []
    return {
        cve
        for e in entries
        if versions.compare(e["version"], installed) > 0
        for cve in e["cves"]
    }


def _side(doc: dict[str, Any], side: str) -> dict[str, Any]:
    return dict(doc["services"]["web"]["sides"][side])


def _shown(base: str, side: str) -> dict[str, Any] | None:
    """web's exposure of `side` as the dashboard's JSON API shows it."""
    doc = json.loads(get(base + "api/v1/services")[1])
    web = next(s for s in doc["services"] if s["name"] == "web")
    return (web["exposure"] or {}).get(side)


def _open_cves(base: str, side: str, urgency: str) -> float:
    return metric_values(base)[("bluegreen_open_cves", (
        ("service", "web"), ("side", side), ("urgency", urgency)))]


def _report(cfg: Path, tmp_path: Path, fmt: str) -> Any:
    out = tmp_path / f"report.{fmt}"
    proc = bluegreen(cfg, "report", "sec-lab", "--format", fmt, "--output", str(out))
    assert proc.returncode == 0, proc.stderr
    return json.loads(out.read_text())


@pytest.mark.destructive
def test_exposure_campaign_gate_flip_rollback_and_evidence(
    fresh_lab: Lab, served: str, tmp_path: Path
) -> None:
    lab, base = fresh_lab, served
    ssl = next(u for u in lab.security_updates() if u.name == "libssl3")
    assert ssl.installed is not None
    expected = _ssl_cves_in_the_real_changelog(lab, ssl.installed)
    assert expected, "libssl3's changelog names no CVE newer than the image's version"

    # 1. before: real CVEs for libssl3 on both sides, from the real changelogs
    code, before = bluegreen_json(no_steps_config(lab), "exposure", "web", timeout=300)
    assert code == 3, before
    assert any(f.startswith("changelog") for f in before["feeds"])
    for side in ("blue", "green"):
        for host in _side(before, side)["hosts"]:
            open_ssl = [c for c in host["open"] if "libssl3" in c["packages"]]
            assert {c["cve"] for c in open_ssl} == expected, host["host"]
            for c in open_ssl:
                assert c["source"] == "openssl" and c["installed"] == ssl.installed
                assert c["fix_available"] is True and c["available_version"] == ssl.candidate

    # the dashboard shows what `exposure` measured: every urgency, per side, with its age
    high_before = _side(before, "blue")["summary"]["by_urgency"]["high"]
    blue = wait_for("the dashboard to show web's exposure", lambda: _shown(base, "blue"), 30)
    assert blue["by_urgency"]["high"] == high_before and blue["hosts_exposed"] == 2
    assert blue["outdated"] is False and blue["hosts_unread"] == 0
    assert f'data-side="blue" data-open="{blue["open"]}"' in get(base)[1]
    assert _open_cves(base, "green", "high") == high_before

    # 2. a campaign file from what is open at or above high, on web
    camp_file = tmp_path / "campaign.yml"
    code, made = bluegreen_json(
        no_steps_config(lab), "campaign", "new", "--services", "web", "--min-urgency", "high",
        "--name", "sec-lab", "-o", str(camp_file), timeout=300,
    )
    assert code == 0, made
    camp = load_campaign(camp_file)
    pins = {p.name: p.version for p in packages_for(camp, "web")}
    assert pins["libssl3"] == ssl.candidate
    high_ssl = {c["cve"] for h in _side(before, "green")["hosts"] for c in h["open"]
                if c["source"] == "openssl" and c["urgency"] in ("high", "critical")}
    assert high_ssl <= {c for a in camp.advisories for c in a.cves}

    # 3. run it; the gate also requires no CVE open at or above high on the standby
    doc = yaml.safe_load(no_steps_config(lab).read_text())
    doc["services"]["web"]["checks"] = [{"kind": "cves", "min_urgency": "high"}]
    cfg = tmp_path / "bluegreen.yml"
    cfg.write_text(yaml.safe_dump(doc))
    proc = bluegreen(cfg, "campaign", "run", str(camp_file), "--yes", timeout=900)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    for host in hosts_of(lab, "web", "green"):
        have = lab.exec(host, ["dpkg-query", "-W", "-f=${Version}", "libssl3"]).stdout
        assert have == ssl.candidate

    # green was patched after the measurement: the dashboard says its numbers are outdated
    wait_for("green's exposure shown as outdated",
             lambda: (_shown(base, "green") or {}).get("outdated"), 30)

    # 4. now: the live side (green) is clean at high, the old side (blue) still exposed
    code, after = bluegreen_json(cfg, "exposure", "web", "--min-urgency", "high", timeout=300)
    assert code == 3, after  # blue, the standby, is still exposed
    assert after["services"]["web"]["live"] == "green"
    assert _side(after, "green")["summary"]["hosts_exposed"] == 0
    assert _side(after, "blue")["summary"]["hosts_exposed"] == 2
    green = wait_for("the dashboard to show green measured again",
                     lambda: (lambda e: e if e and not e["outdated"] else None)(
                         _shown(base, "green")), 30)
    assert green["by_urgency"].get("high", 0) == 0 and green["by_urgency"].get("critical", 0) == 0
    assert _open_cves(base, "green", "high") == 0
    assert _open_cves(base, "blue", "high") == high_before
    code, green_only = bluegreen_json(cfg, "exposure", "web", "--side", "green",
                                      "--min-urgency", "high", timeout=300)
    assert code == 0, green_only

    report = _report(cfg, tmp_path, "json")
    web = report["services"]["web"]["cves"]
    assert web["now"]["live"] == "green" and web["now"]["exposed"] is False
    ssl_adv = [a for a in web["hosts"]["web-green-1"]["advisories"] if "libssl3" in a["packages"]]
    assert ssl_adv and all((a["before"], a["after"], a["now"]) == ("open", "fixed", "fixed")
                           for a in ssl_adv)
    assert all(a["now"] == "open" for a in web["hosts"]["web-blue-1"]["advisories"]
               if "libssl3" in a["packages"])
    vex = _report(cfg, tmp_path, "openvex")
    jsonschema.Draft202012Validator(SCHEMA).validate(vex)
    status = {(s["vulnerability"]["name"], s["products"][0]["@id"]): s["status"]
              for s in vex["statements"]}
    some_cve = sorted(expected & high_ssl)[0]
    assert status[(some_cve, "urn:bluegreen:host:web-green-1")] == "fixed"
    assert status[(some_cve, "urn:bluegreen:host:web-blue-1")] == "affected"
    assert report["audit"]["head_hash"] in vex["tooling"]

    # 5. incident: roll back to the unpatched side; report and exposure say so
    proc = bluegreen(cfg, "rollback", "web", "--reason", "INC-12 test")
    assert proc.returncode == 0, proc.stderr
    report = _report(cfg, tmp_path, "json")
    now = report["services"]["web"]["cves"]["now"]
    assert now["live"] == "blue" and now["exposed"] is True
    assert "EXPOSED again" in now["words"]
    assert some_cve in now["open_on_live"]
    code, again = bluegreen_json(cfg, "exposure", "web", "--min-urgency", "high", timeout=300)
    assert code == 3 and again["services"]["web"]["live"] == "blue"
    md = bluegreen(cfg, "report", "sec-lab", "--format", "md", "--output", str(tmp_path / "r.md"))
    assert md.returncode == 0
    assert "EXPOSED again" in (tmp_path / "r.md").read_text()

    # the HTML report of this campaign, in Chromium with scripts off: the CVE table per host
    html = tmp_path / "report.html"
    out = bluegreen(cfg, "report", "sec-lab", "--format", "html", "--output", str(html))
    assert out.returncode == 0, out.stderr
    ssl_ids = {a["id"] for a in web["hosts"]["web-green-1"]["advisories"]
               if "libssl3" in a["packages"]}
    with chromium(javascript=False) as browser:
        browser.get(html.as_uri())
        band = browser.find_element(By.ID, "exposure")
        assert band.get_attribute("class") == "bad", band.get_attribute("outerHTML")
        assert band.text.split("\n")[0] == str(len(now["open_on_live"])), band.text
        (section,) = browser.find_elements(By.CSS_SELECTOR, "section.service")
        assert "EXPOSED again" in section.find_element(By.CSS_SELECTOR, "ul.facts").text
        rows = {}
        for tr in section.find_elements(By.CSS_SELECTOR, "table.cves tbody tr"):
            cells = [td.text for td in tr.find_elements(By.TAG_NAME, "td")]
            rows[(cells[0], cells[2])] = cells
        assert {h for h, _ in rows} == set(hosts_of(lab, "web", "blue") + hosts_of(lab, "web", "green"))
        for adv in ssl_ids:
            green_row, blue_row = rows[("web-green-1", adv)], rows[("web-blue-1", adv)]
            assert green_row[1] == "green" and green_row[4:] == ["open", "fixed", "fixed"]
            assert blue_row[1] == "blue" and blue_row[6] == "open"  # never patched: exposed
        assert any(some_cve in rows[("web-green-1", adv)][3] for adv in ssl_ids)
        screenshot(browser, "report-cves.png")
