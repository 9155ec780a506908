"""What people look at, on the real lab, in a real headless Chromium: the campaign report
(HTML, scripts off), the live dashboard while a rollout runs (scripts on), /metrics parsed
by prometheus-client's own parser, the JSON API, and a store too busy to read.

Screenshots are test artefacts (`test-artifacts/`); with BLUEGREEN_UPDATE_SCREENSHOTS=1
they are also written to docs/screenshots/ (the README shows those)."""

from __future__ import annotations

import functools
import json
import os
import socket
import sqlite3
import subprocess
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families
from selenium.common.exceptions import StaleElementReferenceException
from selenium.webdriver.common.by import By

from orchestrator.lab.lab import Lab
from tests.integration.test_campaign import write_campaign
from tests.support.browser import chromium, full_page_screenshot
from tests.support.cli import BLUEGREEN, bluegreen, bluegreen_json
from tests.support.lab import (
    FIXED,
    VULNERABLE,
    hosts_of,
    no_steps_config,
    served_by,
    slow_patch_config,
)

pytestmark = [pytest.mark.lab, pytest.mark.destructive]

ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = ROOT / "test-artifacts"
# a check whose output is markup: it must show as text, and it fails (exit 1)
MARKUP_OUTPUT = '<b id="injected">bold</b><script>document.title="pwned"</script>'


def screenshot(driver: Any, name: str) -> Path:
    path = full_page_screenshot(driver, ARTIFACTS / name)
    if os.environ.get("BLUEGREEN_UPDATE_SCREENSHOTS"):
        full_page_screenshot(driver, ROOT / "docs" / "screenshots" / name)
    assert path.stat().st_size > 10_000, path
    return path


def wait_for(what: str, check: Callable[[], Any], timeout: float = 120.0) -> Any:
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        try:
            last = check()
        except StaleElementReferenceException as exc:
            # live.js swapped the page body between finding an element and reading it
            last = None, exc.msg
        else:
            if last:
                return last
        time.sleep(0.25)
    raise AssertionError(f"timed out waiting for {what} (last: {last!r})")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=10) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def metric_values(base: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    code, text = get(base + "metrics")
    assert code == 200, text
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for f in text_string_to_metric_families(text) for s in f.samples}


def live(service: str, side: str) -> tuple[str, tuple[tuple[str, str], ...]]:
    return ("bluegreen_live_side", (("service", service), ("side", side)))


@pytest.fixture
def served(fresh_lab: Lab) -> Iterator[str]:
    """`bluegreen serve` on a free loopback port, reading every half second."""
    port = free_port()
    proc = subprocess.Popen(
        [*BLUEGREEN, "-c", str(no_steps_config(fresh_lab)), "serve", "--listen",
         f"127.0.0.1:{port}", "--interval", "0.5"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    base = f"http://127.0.0.1:{port}/"
    try:
        wait_for("serve to answer", lambda: _answers(base, proc), timeout=60)
        yield base
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    out = (proc.stdout.read() if proc.stdout else "")
    assert f"read-only dashboard on {base}" in out and "loopback only, no token" in out, out


def _answers(base: str, proc: subprocess.Popen[str]) -> bool:
    if proc.poll() is not None:
        raise AssertionError(f"serve exited {proc.returncode}: "
                             f"{proc.stderr.read() if proc.stderr else ''}")
    try:
        return get(base + "api/v1/services")[0] == 200
    except OSError:
        return False


def test_report_of_a_lab_campaign_in_chromium(fresh_lab: Lab, tmp_path: Path) -> None:
    """web is patched and flipped; api's gate fails on a check whose output is markup."""
    lab = fresh_lab
    doc = yaml.safe_load(no_steps_config(lab).read_text())
    doc["services"]["api"].setdefault("checks", []).append(
        {"kind": "command", "argv": ["sh", "-c", f"echo '{MARKUP_OUTPUT}'; exit 1"]})
    config = tmp_path / "bluegreen.yml"
    config.write_text(yaml.safe_dump(doc))
    camp = write_campaign(tmp_path, "views-demo")
    run = bluegreen(config, "campaign", "run", str(camp), "--yes", timeout=900)
    assert run.returncode == 3, run.stderr[-3000:]
    assert served_by(lab, "web") == "green" and served_by(lab, "api") == "blue"

    report = tmp_path / "report.html"
    out = bluegreen(config, "report", "views-demo", "--format", "html", "--output", str(report))
    assert out.returncode == 0, out.stderr
    code, checked = bluegreen_json(config, "audit", "verify", "--report", str(report))
    assert code == 0 and checked["ok"], checked

    with chromium(javascript=False) as browser:
        browser.get(report.as_uri())
        assert browser.title == "Campaign views-demo: failed"
        band = browser.find_element(By.ID, "summary").text
        assert "1\ndone" in band and "1\nfailed" in band, band
        web, api = browser.find_elements(By.CSS_SELECTOR, "section.service")
        assert web.find_element(By.TAG_NAME, "h3").text == "web (wave 1) done"
        rows = [[td.text for td in tr.find_elements(By.TAG_NAME, "td")]
                for tr in web.find_elements(By.CSS_SELECTOR, "table.versions tbody tr")]
        assert sorted(rows) == sorted(
            [h, p, VULNERABLE[p], FIXED[p]] for h in hosts_of(lab, "web", "green") for p in FIXED)
        bars = web.find_elements(By.CSS_SELECTOR, "svg.timeline rect")
        assert [b.get_attribute("class") for b in bars] == ["good"] * 5
        assert "bake" in web.find_element(By.CSS_SELECTOR, "svg.timeline").text
        # api: the failed check first, its markup shown as text, nothing injected
        assert api.find_element(By.TAG_NAME, "h3").text == "api (wave 2) failed"
        first = api.find_elements(By.CSS_SELECTOR, "table.probes tbody tr")[0]
        cells = [td.text for td in first.find_elements(By.TAG_NAME, "td")]
        assert cells[0] == "fail" and cells[2].startswith("command:sh"), cells
        assert cells[1] in hosts_of(lab, "api", "green")
        assert MARKUP_OUTPUT in cells[3], cells
        assert not browser.find_elements(By.ID, "injected")
        assert not browser.find_elements(By.CSS_SELECTOR, "script")
        assert browser.find_element(By.ID, "audit-head").text == \
            f"{checked['count']}:{checked['head_hash']}"
        screenshot(browser, "report.png")


def test_dashboard_follows_a_rollout_metrics_and_api(
    fresh_lab: Lab, served: str, tmp_path: Path
) -> None:
    lab, base = fresh_lab, served
    config = slow_patch_config(no_steps_config(lab), tmp_path, seconds=6)
    m = metric_values(base)
    assert m[live("web", "blue")] == 1.0 and m[live("web", "green")] == 0.0
    assert m[("bluegreen_rollbacks_total", (("service", "web"),))] == 0.0
    assert m[("bluegreen_audit_chain_ok", ())] == 1.0
    # the real CVEs of both sides, measured once: the dashboard shows them per side
    code, found = bluegreen_json(no_steps_config(lab), "exposure", "web", timeout=300)
    assert code == 3, found

    def exposure_cell(browser: Any, side: str) -> Any:
        return browser.find_element(
            By.CSS_SELECTOR, f'tr[data-service="web"] td.exposure div[data-side="{side}"]')

    def measured(browser: Any, side: str) -> tuple[int, str] | None:
        """(open CVEs, the cell's words) once the page shows a measurement."""
        cell = exposure_cell(browser, side)
        value = cell.get_attribute("data-open")
        return (int(value), str(cell.text)) if value else None

    with chromium(javascript=True) as browser:
        browser.get(base)
        assert "web blue" in browser.title
        for side in ("blue", "green"):
            shown, words = wait_for(f"{side}'s exposure on the page",
                                    functools.partial(measured, browser, side), timeout=30)
            summary = found["services"]["web"]["sides"][side]["summary"]
            assert shown >= summary["cves"] > 0, words  # every urgency vs low and above
            assert f"{shown} open" in words and "2 of 2 hosts exposed" in words, words
        browser.execute_script("window.__stillHere = 42;")
        rollout = subprocess.Popen(
            [*BLUEGREEN, "-c", str(config), "rollout", "web", "--yes"],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            def patching() -> bool:
                steps = [e.text for e in browser.find_elements(By.CSS_SELECTOR, ".run .step")]
                return "patch" in steps
            wait_for("the dashboard to show web patching", patching)
            hosts = wait_for("the run's hosts", lambda: browser.find_element(
                By.CSS_SELECTOR, ".run ul.hosts").text, timeout=10)
            assert all(h in hosts for h in hosts_of(lab, "web", "green")), hosts
            # green is being patched: its exposure numbers are older than its patch
            wait_for("green's exposure marked outdated",
                     lambda: "outdated" in exposure_cell(browser, "green").text, timeout=30)
            screenshot(browser, "dashboard.png")
            _, err = rollout.communicate(timeout=300)
        finally:
            if rollout.poll() is None:
                rollout.kill()
                rollout.wait()
        assert rollout.returncode == 0, err[-3000:]

        def flipped() -> bool:
            row = browser.find_element(By.CSS_SELECTOR, 'tr[data-service="web"]')
            return row.get_attribute("data-live") == "green" and bool(
                browser.find_elements(By.ID, "no-runs"))
        wait_for("the dashboard to show web live on green", flipped, timeout=30)
        assert browser.execute_script("return window.__stillHere;") == 42  # updated in place
        assert "web green" in browser.title

    m = metric_values(base)
    assert m[live("web", "green")] == 1.0 and m[live("web", "blue")] == 0.0
    since = m[("bluegreen_seconds_since_last_flip", (("service", "web"),))]
    assert 0 <= since < 120, since
    assert m[("bluegreen_side_state", (("service", "web"), ("side", "green"),
                                       ("state", "verified")))] == 1.0

    # the dashboard never slows the incident path: rollback while it is read hard
    stop = threading.Event()
    served_pages: list[int] = []

    def hammer() -> None:
        while not stop.is_set() and len(served_pages) < 2000:
            served_pages.append(get(base)[0])
    readers = [threading.Thread(target=hammer) for _ in range(4)]
    for t in readers:
        t.start()
    try:
        back = bluegreen(no_steps_config(lab), "rollback", "web", "--reason", "INC-views")
    finally:
        stop.set()
        for t in readers:
            t.join(timeout=30)
    assert back.returncode == 0, back.stderr
    assert served_pages and set(served_pages) == {200}
    # the router moves before the store records it: wait for a read after both
    m = wait_for("metrics after the rollback", lambda: (lambda v: v if v[
        ("bluegreen_rollbacks_total", (("service", "web"),))] == 1.0 else None)(
        metric_values(base)), timeout=10)
    assert m[live("web", "blue")] == 1.0
    assert m[("bluegreen_automatic_rollbacks_total", (("service", "web"),))] == 0.0

    # the JSON API, and nothing but GET/HEAD
    services = json.loads(get(base + "api/v1/services")[1])["services"]
    web = next(s for s in services if s["name"] == "web")
    assert web["live"] == "blue" and web["rollbacks"] == 1 and web["agrees"]
    code, status = bluegreen_json(no_steps_config(lab), "status", "web")
    assert code == 0, status
    assert {s["side"]: s["state"] for s in web["sides"]} == {
        side: v["state"] for side, v in status["sides"].items()}
    runs = json.loads(get(base + "api/v1/runs")[1])["runs"]
    assert runs[0]["kind"] == "rollout" and runs[0]["status"] == "done"
    audit = json.loads(get(base + "api/v1/audit")[1])["audit"]
    code, chain = bluegreen_json(no_steps_config(lab), "audit", "verify")
    assert audit["ok"] and audit["count"] == chain["count"]
    for method in ("POST", "PUT", "DELETE"):
        req = urllib.request.Request(base + "api/v1/services", method=method, data=b"{}")
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(req, timeout=10)
        assert refused.value.code == 405

    # the same metrics for node_exporter's textfile collector
    prom = tmp_path / "textfile" / "bluegreen.prom"
    prom.parent.mkdir()
    out = bluegreen(no_steps_config(lab), "metrics", "--textfile", str(prom))
    assert out.returncode == 0, out.stderr
    assert (prom.stat().st_mode & 0o777) == 0o644
    samples = {(s.name, tuple(sorted(s.labels.items()))): s.value
               for f in text_string_to_metric_families(prom.read_text()) for s in f.samples}
    assert samples[live("web", "blue")] == 1.0
    assert samples[("bluegreen_rollbacks_total", (("service", "web"),))] == 1.0


def test_a_busy_store_is_shown_stale_and_a_public_address_needs_a_token(
    fresh_lab: Lab, served: str
) -> None:
    base = served
    code, page = get(base)
    assert code == 200 and "stale since" not in page
    db = sqlite3.connect(fresh_lab.paths.root / "state" / "state.db", isolation_level=None,
                         timeout=10)
    try:
        # exclusive locking mode keeps readers out too, even in WAL mode (a backup or a
        # migration can do this); the server's reads come between, so wait for a gap
        db.execute("PRAGMA locking_mode = EXCLUSIVE")
        db.execute("BEGIN EXCLUSIVE")
        db.execute("SELECT count(*) FROM runs").fetchone()
        page = wait_for("the page to say stale",
                        lambda: (lambda p: p if "stale since" in p else None)(get(base)[1]),
                        timeout=30)
        assert "locked" in page and 'tr id="service-1"' in page  # the last snapshot stays
        doc = json.loads(get(base + "api/v1/services")[1])
        assert doc["stale_since"] and doc["services"]
        metrics = metric_values(base)
        assert metrics[("bluegreen_snapshot_stale", ())] == 1.0
    finally:
        if db.in_transaction:
            db.execute("ROLLBACK")
        db.close()
    wait_for("the page to be fresh again", lambda: "stale since" not in get(base)[1], 30)

    port = free_port()
    refused = bluegreen(no_steps_config(fresh_lab), "serve", "--listen", f"0.0.0.0:{port}",
                        env={"BLUEGREEN_SERVE_TOKEN": ""}, timeout=30)
    assert refused.returncode == 2 and "token is required" in refused.stderr, refused.stderr
