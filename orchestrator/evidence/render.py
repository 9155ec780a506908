"""Campaign evidence rendered: JSON, Markdown or HTML, all from one typed model.

The model (`evidence.model.CampaignReport`, built by `campaign.report.build_report()` from
the state store) holds what an auditor asks for; `render()` gives JSON
(`CampaignReport.as_json()`), Markdown (every value escaped: one visible line, no markup),
HTML (`report_html`: Jinja2 templates, autoescaped, one self-contained file) or OpenVEX
(`openvex`). `write_report()` writes it with mode 0600 through
`safe_write`.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from orchestrator.evidence.model import CampaignReport
from orchestrator.safe_write import write_file
from orchestrator.text import markdown, one_line

__all__ = ["FORMATS", "default_report_path", "render", "write_report"]

FORMATS = ("json", "md", "html", "openvex")


def render(report: CampaignReport, fmt: str) -> str:
    if fmt == "json":
        return json.dumps(report.as_json(), indent=2, default=str) + "\n"
    if fmt == "openvex":
        from orchestrator.evidence.openvex import openvex

        return json.dumps(openvex(report.as_json()), indent=2) + "\n"
    if fmt == "md":
        return _markdown(report.as_json())
    from orchestrator.evidence.report_html import render_html

    return render_html(report)


def _markdown(doc: dict[str, Any]) -> str:
    """Every interpolated value goes through `_t` (`text.markdown`): names, versions and
    check ids from hosts, actors and reasons from people are shown, never interpreted."""
    out = [
        f"# Campaign {_t(doc['campaign'])} — {_t(doc['status'])}",
        "",
        f"- run: {_code(doc['run_id'])} by {_t(doc['actor'])}, {_t(doc['started_at'])} → "
        f"{_t(doc['finished_at'] or '-')} ({_t(doc['seconds'] or '-')} s)",
        f"- result: {_t(doc['result'] or '-')}",
        f"- audit chain: {'ok' if doc['audit']['ok'] else 'BROKEN'}, "
        f"{_t(doc['audit']['records'])} records, head {_code(_audit_head(doc))} (check it "
        "later: `bluegreen audit verify --report THIS-FILE`)",
        "",
        "## Exposure now",
        "",
        *([f"- {_t(w)}" for w in doc.get("exposure_now", [])] or ["- not measured"]),
        "",
        "## Advisories",
        "",
    ]
    for a in doc["advisories"]:
        pkgs = ", ".join(f"{n} {v}" for n, v in a.get("packages", {}).items())
        out.append(
            f"- **{_t(a['id'])}** ({_t(a.get('severity'))}): "
            f"{_t(', '.join(a.get('cves', [])))} — {_t(pkgs)}"
        )
    out += ["", "## Approvals", ""]
    out += [f"- {_t(a['actor'])}{_os_user(a)} at {_t(a['at'])} ({_t(a.get('point'))})"
            + (f": {_t(a['reason'])}" if a.get("reason") else "")
            for a in doc["approvals"]] or ["- none"]
    out += ["", "## Services", ""]
    for svc, s in doc["services"].items():
        flip = s.get("flip") or {}
        out += [
            f"### {_t(svc)} (wave {_t(s['wave'])}): {_t(s['status'])}",
            "",
            f"- rollout {_code(s.get('child_run'))}: {_t(s.get('child_result') or '-')} "
            f"({_t(s.get('seconds') or '-')} s)",
            f"- flip: {_t(flip.get('from', '-'))} → {_t(flip.get('to', '-'))} at "
            f"{_t(flip.get('at', '-'))}",
            f"- verification: {_t(s['verification']['summary'] or '-')}",
            "",
            "| host | package | before | after |",
            "|---|---|---|---|",
        ]
        for host, v in s["hosts"].items():
            for pkg in sorted(set(v["before"]) | set(v["after"])):
                out.append(
                    f"| {_t(host)} | {_t(pkg)} | {_t(v['before'].get(pkg, '-'))} | "
                    f"{_t(v['after'].get(pkg, '-'))} |"
                )
        out += ["", "| host | check | result |", "|---|---|---|"]
        for r in s["verification"]["results"]:
            out.append(f"| {_t(r['host'])} | {_t(r['check'])} | {_t(r['status'])} |")
        cves = s.get("cves") or {}
        if cves.get("hosts"):
            out += ["", f"CVEs: {_t(cves['now']['words'])} (read {_t(cves['now']['at'] or '-')}"
                    "; versions as each host's package database reports them)", "",
                    "| host | side | advisory | CVEs | before | after | now |",
                    "|---|---|---|---|---|---|---|"]
            for host, h in cves["hosts"].items():
                for a in h["advisories"]:
                    out.append(f"| {_t(host)} | {_t(h['side'] or '-')} | {_t(a['id'])} | "
                               f"{_t(', '.join(a['cves']) or '-')} | {_t(a['before'] or '-')} | "
                               f"{_t(a['after'] or '-')} | {_t(a['now'])} |")
        out += _bake_steps(s.get("bake_steps") or [])
        if s.get("converge"):
            out += ["", f"- converge: {_t(s['converge'].get('message'))}"]
        out.append("")
    out += ["## Rollbacks", ""]
    out += [
        f"- {_t(r['at'])} {_t(r['service'])}: {_t(r['from'])} → {_t(r['to'])} by "
        f"{_t(r['actor'])}{_os_user(r)} ({_t(r['command'])}: {_t(r['reason'])})"
        for r in doc["rollbacks"]
    ] or ["- none"]
    return "\n".join(out) + "\n"


def _bake_steps(steps: list[dict[str, Any]]) -> list[str]:
    """The bake's exposure steps: each step's verdict, then every measurement of it."""
    from orchestrator.evidence.bake import measurement_rows, step_words

    if not steps:
        return []
    out = ["", "Bake steps (the patched side against its twin, same window):", ""]
    out += [f"- {_t(step_words(step))}" for step in steps]
    out += ["", "| step | # | metric | verdict | patched | twin | volume | why | queries |",
            "|---|---|---|---|---|---|---|---|---|"]
    for step in steps:
        for m in measurement_rows(step):
            queries = "; ".join(f"{side}: {q}" for side, q in m.queries)
            out.append(f"| {m.step} ({m.percent}%) | {m.at} | {_t(m.metric)} | {_t(m.verdict)} "
                       f"| {_t(m.canary)} | {_t(m.baseline)} | {_t(m.volume)} | {_t(m.why)} "
                       f"| {_t(queries or '-')} |")
    return out


def write_report(report: CampaignReport, fmt: str, output: Path) -> Path:
    """Write with mode 0600, atomically, never through a symlink (`safe_write`)."""
    return write_file(output, render(report, fmt), make_parents=True)


def _t(value: Any) -> str:
    """Any value as Markdown text: one visible line, markup escaped (also a table cell)."""
    return markdown(None if value is None else str(value))


def _code(value: Any) -> str:
    """A code span (bluegreen's own ids): one visible line, no backtick to close it early."""
    return "`" + one_line(None if value is None else str(value)).replace("`", "'") + "`"


def _os_user(rec: dict[str, Any]) -> str:
    """ (OS user, via sudo) next to the claimed actor, when the record has them."""
    user, sudo = rec.get("os_user"), rec.get("sudo_user")
    if not user:
        return ""
    return f" (OS user {_t(user)}" + (f", sudo from {_t(sudo)})" if sudo else ")")


def _audit_head(doc: dict[str, Any]) -> str:
    audit = doc["audit"]
    return str(audit.get("head") or f"{audit['records']}:{audit['head_hash']}")


def default_report_path(reports_dir: Path, report: CampaignReport, fmt: str) -> Path:
    suffix = "openvex.json" if fmt == "openvex" else fmt
    return reports_dir / f"{report.run_id}.{suffix}"
