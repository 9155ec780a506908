"""The HTML report in a real Chromium with scripts ON, for content no lab host can carry:
host names, actors, reasons, advisory ids and check output made of markup, quotes and bidi
controls. All of it must be shown as text; nothing may run or be fetched. (The lab's own
campaign report, with scripts off, is in test_views.py.)"""

from __future__ import annotations

from pathlib import Path

from selenium.webdriver.common.by import By

from orchestrator.campaign.report import build_report
from orchestrator.evidence.render import write_report
from orchestrator.state.sqlite import SQLiteStateStore
from orchestrator.testing import FrozenClock
from tests.support.browser import chromium
from tests.support.evidence import MARKUP, write_campaign


def test_hostile_names_and_output_are_text_in_chromium(tmp_path: Path) -> None:
    clock = FrozenClock()
    with SQLiteStateStore(tmp_path / "state.db", clock=clock,
                          audit_key_file=tmp_path / "audit.key") as store:
        names = write_campaign(store, clock, hostile=True)
        run = store.get_run("c1")
        assert run is not None
        path = write_report(build_report(store, run), "html", tmp_path / "hostile.html")
    with chromium(javascript=True) as browser:
        browser.get(path.as_uri())
        assert browser.title == "Campaign evidence: failed"  # no script changed it
        assert not browser.find_elements(By.CSS_SELECTOR, "img, script, iframe, object")
        rows = browser.find_elements(By.CSS_SELECTOR, "table.versions tbody tr td:first-child")
        shown = {r.text for r in rows}
        for host in names["web_hosts"]:
            assert host.replace("\u202e", "\\u202e") in shown, (host, shown)
        first = browser.find_element(By.CSS_SELECTOR, "#service-2 table.probes tbody tr")
        assert MARKUP in first.text and "fail" in first.text
        # the bake's measurements: a metric name and query from bluegreen.yml, as text
        metrics = browser.find_elements(By.CSS_SELECTOR,
                                        "table.bake tr.measurement td:nth-child(3)")
        assert len(metrics) == 3 and all(MARKUP in m.text for m in metrics)
        queries = browser.find_elements(By.CSS_SELECTOR, "table.bake tr.measurement code")
        assert queries and all(MARKUP in q.text for q in queries)
        assert browser.execute_script("return document.images.length") == 0
