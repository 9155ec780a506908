"""The campaign report: one typed model, rendered as JSON, Markdown and HTML (Jinja2,
autoescaped, self-contained). The HTML is also opened in a real Chromium in
tests/integration/test_views_browser.py; here it is parsed with the standard library."""

from __future__ import annotations

import json
from collections.abc import Iterator
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest

from orchestrator.campaign.report import build_report
from orchestrator.evidence.model import CampaignReport, StepSpan
from orchestrator.evidence.render import render, write_report
from orchestrator.evidence.report_html import timeline
from orchestrator.state.audit_check import report_head
from orchestrator.state.sqlite import SQLiteStateStore
from orchestrator.testing import FrozenClock
from tests.support.evidence import FIXED, LINK, MARKUP, VULNERABLE, write_campaign


def _report(tmp_path: Path, *, hostile: bool) -> tuple[CampaignReport, dict[str, Any]]:
    clock = FrozenClock()
    with SQLiteStateStore(tmp_path / "state.db", clock=clock,
                          audit_key_file=tmp_path / "audit.key") as store:
        names = write_campaign(store, clock, hostile=hostile)
        run = store.get_run("c1")
        assert run is not None
        return build_report(store, run), names


@pytest.fixture
def plain(tmp_path: Path) -> Iterator[tuple[CampaignReport, dict[str, Any]]]:
    yield _report(tmp_path, hostile=False)


class Elements(HTMLParser):
    """Every start tag with its attributes, and the text (for "shown as text")."""

    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))

    def handle_data(self, data: str) -> None:
        self.text.append(data)


def parse(html: str) -> Elements:
    p = Elements()
    p.feed(html)
    p.close()
    return p


def test_model_holds_outcomes_steps_probes_and_rollbacks(plain: Any) -> None:
    report, names = plain
    assert report.status == "failed" and report.counts["done"] == 1
    assert report.counts["failed"] == 1
    web, api = report.services["web"], report.services["api"]
    # the rollback came after the run: in the rollbacks, not on the run's time axis
    assert [s.name for s in web.steps] == ["precheck", "patch", "verify", "flip", "bake"]
    patch = next(s for s in web.steps if s.name == "patch")
    assert patch.seconds == pytest.approx(2.3) and patch.outcome == "ok"
    assert next(s for s in api.steps if s.name == "verify").outcome == "failed"
    assert {(v.host, v.package, v.before, v.after) for v in web.versions} == {
        (h, p, VULNERABLE[p], FIXED[p]) for h in names["web_hosts"] for p in FIXED}
    # a failed gate: its failures come from the audit record, first
    assert api.probes[0].check == names["bad_check"] and api.probes[0].failed
    assert api.verification_summary == "1 of 3 checks failed"
    assert report.rollbacks[0].reason == names["reason"] and not report.rollbacks[0].automatic
    assert report.approvals[0].point == "before_flip"
    assert report.webhooks == ["https://hooks.example.net/…"]  # no path, no token


def test_json_keeps_its_keys_and_adds_summary_and_timeline(plain: Any) -> None:
    report, names = plain
    doc = json.loads(render(report, "json"))
    web = doc["services"]["web"]
    assert web["hosts"][names["web_hosts"][0]] == {"before": VULNERABLE, "after": FIXED}
    assert web["flip"]["from"] == "blue" and web["flip"]["to"] == "green"
    assert web["status"] == "done" and web["wave"] == 1
    assert [t["step"] for t in web["timeline"]][:2] == ["precheck", "patch"]
    assert doc["summary"]["failed"] == 1 and doc["summary"]["exposure"] is None
    assert doc["audit"]["head"] == f"{doc['audit']['records']}:{doc['audit']['head_hash']}"
    assert "s3cret" not in json.dumps(doc)


def test_html_is_self_contained_without_script(plain: Any, tmp_path: Path) -> None:
    report, _ = plain
    html = render(report, "html")
    tags = parse(html).tags
    names = [t for t, _ in tags]
    assert "script" not in names and names.count("style") == 1
    assert not [a for _, attrs in tags for k, a in attrs.items()
                if k in ("src", "href", "action") or (a or "").startswith("http")
                and k != "xmlns"], "no external fetch"
    assert names.count("svg") == 2  # a timeline per service
    # the audit head can be checked later from the HTML file itself
    path = write_report(report, "html", tmp_path / "r.html")
    head = report_head(path)
    assert (head.seq, head.hash) == (report.audit.records, report.audit.head_hash)


def test_html_tables_hold_the_rows_failures_first(plain: Any) -> None:
    report, names = plain
    html = render(report, "html")
    api_section = html[html.index('id="service-2"'):]
    probes = api_section[api_section.index('class="probes"'):]
    first_row = probes[probes.index("<tbody>"):].split("</tr>")[0]
    assert "failed" in first_row and names["bad_check"] in first_row
    versions = html[html.index('class="versions"'):]
    assert versions.split("</table>")[0].count('<tr class="changed">') == 4  # 2 hosts x 2


def test_hostile_text_is_escaped_everywhere(tmp_path: Path) -> None:
    report, names = _report(tmp_path, hostile=True)
    assert MARKUP not in render(report, "html")
    for fmt in ("html", "md"):
        assert "\u202e" not in render(report, fmt), fmt  # bidi override shown as an escape
    parsed = parse(render(report, "html"))
    assert {t for t, _ in parsed.tags}.isdisjoint({"script", "img", "iframe", "object"})
    text = "".join(parsed.text)
    assert names["bad_check"].replace("\u202e", "\\u202e") in text  # the markup, as text


def test_markdown_shows_markup_as_text(tmp_path: Path) -> None:
    """`<script>`, `<img onerror>` and `[verified OK](https://evil.example/)` in actors,
    reasons, check ids, host names and versions from hosts: rendered by a real Markdown
    renderer (raw HTML on, tables on), they are text: no tag, no link."""
    from markdown_it import MarkdownIt

    report, names = _report(tmp_path, hostile=True)
    md = render(report, "md")
    assert "<script>" not in md and "<img" not in md and LINK not in md
    html = MarkdownIt("commonmark", {"html": True}).enable("table").render(md)
    parsed = parse(html)
    assert not [t for t, _ in parsed.tags if t in ("script", "img", "a")], parsed.tags
    text = "".join(parsed.text)
    shown = MARKUP + LINK
    # each hostile field once per place it is shown, as text: actor, reasons, check, hosts,
    # versions (the rows of the version table)
    assert text.count(shown) >= 10, text
    for field in (names["reason"], names["bad_check"], names["web_hosts"][0], "3.0.15-1"):
        assert field.replace("\u202e", "\\u202e") in text or field in text, field
    # the version table: each of the hosts' versions, with the markup, in its cell
    assert "| 3\\.0\\.15\\-1&lt;img src=x onerror" in md
    assert "3.0.15-1" + MARKUP + LINK in text


def test_bake_steps_every_measurement_in_json_markdown_and_html(plain: Any) -> None:
    """The bake's exposure steps as the canary step journaled them: each measurement with
    the queries as sent, both sides' values, the volumes, the verdict and why."""
    report, _ = plain
    assert report.services["api"].bake_steps == []  # failed at verify: no bake
    doc = json.loads(render(report, "json"))
    steps = doc["services"]["web"]["bake_steps"]
    assert [(s["number"], s["percent"], s["verdict"], s["source"]) for s in steps] == [
        (1, 20, "pass", "prometheus"), (2, 50, "pass", "prometheus")]
    first = steps[0]["measurements"][0]["measurements"][0]
    assert first["verdict"] == "inconclusive" and first["why"] == "volume 12 below 20"
    assert first["queries"]["canary"] == \
        'sum(rate(errors{backend="web_green"}[8s]))'
    md = render(report, "md")
    assert "- step 1 \\(20%\\): pass after 6s from prometheus" in md
    rows = [line for line in md.splitlines() if line.startswith("| 1 (20%) |")]
    assert len(rows) == 2 and "inconclusive" in rows[0] and "121 / 484" in rows[1]
    html = render(report, "html")
    bake = html[html.index('class="bake"'):].split("</table>")[0]
    assert bake.count('class="measurement"') == 3
    assert 'data-verdict="inconclusive"' in bake and "0.0021" in bake
    assert "canary: sum(rate(errors{backend=&#34;web_green&#34;}[8s]))" in bake


def test_bake_steps_hostile_metric_and_query_are_text(tmp_path: Path) -> None:
    """A metric's name and its query come from bluegreen.yml: untrusted on the page."""
    report, _ = _report(tmp_path, hostile=True)
    html = render(report, "html")
    bake = html[html.index('class="bake"'):].split("</table>")[0]
    assert MARKUP not in bake and "&lt;script&gt;document.title=2" in bake
    assert not {t for t, _ in parse(bake).tags} & {"script", "img"}
    md = render(report, "md")
    rows = [line for line in md.splitlines() if line.startswith("| 1 (20%) |")]
    assert rows and all("<script>" not in r and LINK not in r for r in rows)


def test_timeline_bars_are_proportional_to_durations() -> None:
    from datetime import UTC, datetime, timedelta

    t0 = datetime(2026, 1, 1, tzinfo=UTC)
    steps = [StepSpan("patch", t0, t0 + timedelta(seconds=3), "ok"),
             StepSpan("verify", t0 + timedelta(seconds=3), t0 + timedelta(seconds=4), "ok"),
             StepSpan("bake", t0 + timedelta(seconds=4), None, "running")]
    tl = timeline(steps)
    assert tl is not None
    patch, verify, bake = tl.bars
    assert patch.width == pytest.approx(3 * verify.width)
    assert verify.x == pytest.approx(patch.x + patch.width)
    assert bake.words == "not ended running" and patch.tone == "good"


def _now(live: str, web_blue: dict[str, str]) -> dict[str, Any]:
    """What `evidence.now.read_now` would read: web live on `live`, api on green (patched)."""
    return {
        "web": {"live": live, "at": "2026-11-08T00:00:00+00:00", "router_error": None,
                "hosts": {"web-blue-1": {"side": "blue", "versions": web_blue},
                          "web-green-1": {"side": "green", "versions": dict(FIXED)},
                          "web-green-2": {"side": "green", "versions": dict(FIXED)}}},
        "api": {"live": "green", "at": "2026-11-08T00:00:00+00:00", "router_error": None,
                "hosts": {"api-green-1": {"side": "green", "versions": dict(FIXED)}}},
    }


@pytest.mark.parametrize(("live", "tone", "open_now"), [("green", "good", "0"),
                                                        ("blue", "bad", "1")])
def test_html_cve_table_per_host_and_exposure_now(
        tmp_path: Path, live: str, tone: str, open_now: str) -> None:
    clock = FrozenClock()
    with SQLiteStateStore(tmp_path / "state.db", clock=clock,
                          audit_key_file=tmp_path / "audit.key") as store:
        write_campaign(store, clock)
        run = store.get_run("c1")
        assert run is not None
        report = build_report(store, run, _now(live, dict(VULNERABLE)))
    assert report.exposure is not None and report.exposure["open"] == int(open_now)
    html = render(report, "html")
    band = html[html.rindex("<li", 0, html.index('id="exposure"')):].split("</li>")[0]
    assert f'class="{tone}" id="exposure"' in band and f'<span class="n">{open_now}</span>' in band
    web = html[html.index('id="service-1"'):html.index('id="service-2"')]
    rows = [r for r in web[web.index('class="cves"'):].split("</table>")[0].split("<tr>")
            if "<td>" in r]
    cells = {r.split("</td>")[0].removeprefix("<td>"): r for r in rows}
    assert set(cells) == {"web-blue-1", "web-green-1", "web-green-2"}
    badges = [b.split(">", 1)[1] for b in cells["web-green-1"].split('<span class="badge')[1:]]
    assert [b.split("<")[0] for b in badges] == ["open", "fixed", "fixed"]  # before after now
    blue = [b.split(">", 1)[1].split("<")[0]
            for b in cells["web-blue-1"].split('<span class="badge')[1:]]
    assert blue == ["-", "-", "open"]  # never patched by the campaign, open now
    assert ("web: EXPOSED" if live == "blue" else "web: closed: live side green") in html
