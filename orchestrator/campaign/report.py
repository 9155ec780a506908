"""Campaign evidence: what an auditor asks for, from the state store only.

`build_report()` collects, for one campaign run: the advisories, per service and host the
versions before and after, every probe result of the verification gate, approvals (who,
as claimed and as the OS saw them, when), flips and rollbacks with their times, durations,
and the audit chain's head as SEQ:HASH (`bluegreen audit verify --report FILE` later checks
that it is a prefix of the chain). `render()` gives JSON, Markdown or HTML, free text
escaped to one visible line; `write_report()` writes it with mode 0600 through
`safe_write`. Webhook URLs are reduced to scheme and host (they often embed tokens); the
store already redacts secrets.
"""

from __future__ import annotations

import html
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from orchestrator.campaign.journal import Journal, Step
from orchestrator.campaign.ops import campaign_status
from orchestrator.safe_write import write_file
from orchestrator.secrets import safe_url
from orchestrator.state.base import StateStore
from orchestrator.state.models import Run
from orchestrator.text import one_line, table_cell

ROLLBACK_COMMANDS = ("rollback", "rollout.auto-rollback", "flip", "flip --force")


def build_report(
    store: StateStore, run: Run, now: dict[str, Any] | None = None
) -> dict[str, Any]:
    """`now`: what `evidence.read_now` read from the hosts at report time (None: not read;
    the report then says exposure now is unknown)."""
    from orchestrator.campaign.evidence import cve_evidence

    params = run.params
    campaign = params.get("campaign", {})
    status = campaign_status(store, run)
    journal = Journal(store, run.run_id)
    begun, ends = journal.begun(), journal.ended()
    names = [s for w in params.get("waves", []) for s in w]
    services: dict[str, Any] = {}
    for svc in names:
        step = begun.get(Step.of_service(svc)) or {}
        child_id = step.get("child_run")
        child = store.get_run(child_id) if child_id else None
        entries = {e.step + ":" + e.phase: e for e in store.journal(child.run_id)} if child else {}
        patch = entries.get("patch:end")
        verify = entries.get("verify:end")
        flip = entries.get("flip:end")
        before = step.get("before") or {}
        after = {
            h: d.get("versions", {})
            for h, d in ((patch.data if patch else {}).get("hosts") or {}).items()
        }
        hosts = {
            h: {"before": before.get(h, {}), "after": after.get(h, {})}
            for h in sorted(set(before) | set(after))
        }
        converge = ends.get(Step.converge(svc))
        rolled_back = any(
            r.service == svc and r.command in ROLLBACK_COMMANDS and r.at >= run.started_at
            for r in store.audit_records()
        )
        cves = cve_evidence(
            campaign.get("advisories", []), hosts, (now or {}).get(svc), svc, rolled_back
        )
        services[svc] = {
            **status.services[svc].as_dict(),
            "child_status": child.status if child else None,
            "child_result": child.result if child else None,
            "started_at": child.started_at.isoformat() if child else None,
            "finished_at": child.finished_at.isoformat() if child and child.finished_at else None,
            "seconds": _seconds(child),
            "hosts": hosts,
            "patch_level": (patch.data.get("patch_level") if patch else None),
            "verification": {
                "summary": verify.data.get("summary") if verify else None,
                "results": verify.data.get("results", []) if verify else [],
            },
            "flip": {"at": flip.at.isoformat(), **flip.data} if flip else None,
            "converge": converge,
            "cves": cves,
        }
    started = run.started_at
    rollbacks = [
        {
            "at": r.at.isoformat(),
            "service": r.service,
            "command": r.command,
            "actor": r.actor,
            "os_user": r.os_user,
            "sudo_user": r.sudo_user,
            "reason": r.reason,
            "from": r.before.get("live"),
            "to": r.after.get("live"),
        }
        for r in store.audit_records()
        if r.command in ROLLBACK_COMMANDS and r.service in names and r.at >= started
    ]
    approvals = [
        {"actor": r.actor, "os_user": r.os_user, "sudo_user": r.sudo_user,
         "hostname": r.hostname, "at": r.at.isoformat(), "reason": r.reason, **r.after}
        for r in store.audit_records()
        if r.command == "campaign.approve" and r.after.get("run_id") == run.run_id
    ]
    chain = store.verify_audit()
    return {
        "report": "bluegreen campaign evidence",
        "generated_at": datetime.now(UTC).isoformat(),
        "campaign": params.get("name"),
        "file": params.get("file"),
        "run_id": run.run_id,
        "status": status.status,
        "result": run.result,
        "actor": run.actor,
        "started_at": started.isoformat(),
        "finished_at": run.finished_at.isoformat() if run.finished_at else None,
        "seconds": _seconds(run),
        "advisories": campaign.get("advisories", []),
        "window": campaign.get("window"),
        "approval_policy": campaign.get("approval"),
        "approvals": approvals,
        "waves": params.get("waves", []),
        "services": services,
        "rollbacks": rollbacks,
        "webhooks": [safe_url(u) for u in (campaign.get("notify") or {}).get("webhooks", [])],
        "audit": {"ok": chain.ok, "records": chain.count, "head_hash": chain.head_hash,
                  "head": f"{chain.count}:{chain.head_hash}", "problem": chain.problem},
        "exposure_now": [s["cves"]["now"]["words"] for s in services.values()],
    }


def _seconds(run: Run | None) -> float | None:
    if run is None or run.finished_at is None:
        return None
    return round((run.finished_at - run.started_at).total_seconds(), 1)


def render(doc: dict[str, Any], fmt: str) -> str:
    if fmt == "json":
        return json.dumps(doc, indent=2, default=str) + "\n"
    if fmt == "openvex":
        from orchestrator.campaign.openvex import openvex

        return json.dumps(openvex(doc), indent=2) + "\n"
    md = _markdown(doc)
    if fmt == "md":
        return md
    return _html(doc)


def _markdown(doc: dict[str, Any]) -> str:
    out = [
        f"# Campaign {_t(doc['campaign'])} — {_t(doc['status'])}",
        "",
        f"- run: `{_t(doc['run_id'])}` by {_t(doc['actor'])}, {doc['started_at']} → "
        f"{doc['finished_at'] or '-'} ({doc['seconds'] or '-'} s)",
        f"- result: {_t(doc['result']) or '-'}",
        f"- audit chain: {'ok' if doc['audit']['ok'] else 'BROKEN'}, "
        f"{doc['audit']['records']} records, head `{_audit_head(doc)}` (check it later: "
        "`bluegreen audit verify --report THIS-FILE`)",
        "",
        "## Exposure now",
        "",
        *[f"- {_t(w)}" for w in doc.get("exposure_now", [])],
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
    out += [f"- {_t(a['actor'])}{_os_user(a)} at {a['at']} ({_t(a.get('point'))})"
            + (f": {_t(a['reason'])}" if a.get("reason") else "")
            for a in doc["approvals"]] or ["- none"]
    out += ["", "## Services", ""]
    for svc, s in doc["services"].items():
        flip = s.get("flip") or {}
        out += [
            f"### {_t(svc)} (wave {s['wave']}): {_t(s['status'])}",
            "",
            f"- rollout `{_t(s.get('child_run'))}`: {_t(s.get('child_result')) or '-'} "
            f"({s.get('seconds') or '-'} s)",
            f"- flip: {_t(flip.get('from', '-'))} → {_t(flip.get('to', '-'))} at "
            f"{_t(flip.get('at', '-'))}",
            f"- verification: {_t(s['verification']['summary']) or '-'}",
            "",
            "| host | package | before | after |",
            "|---|---|---|---|",
        ]
        for host, v in s["hosts"].items():
            for pkg in sorted(set(v["before"]) | set(v["after"])):
                out.append(
                    f"| {_c(host)} | {_c(pkg)} | {_c(v['before'].get(pkg, '-'))} | "
                    f"{_c(v['after'].get(pkg, '-'))} |"
                )
        out += ["", "| host | check | result |", "|---|---|---|"]
        for r in s["verification"]["results"]:
            out.append(f"| {_c(r['host'])} | {_c(r['check'])} | {_c(r['status'])} |")
        cves = s.get("cves") or {}
        if cves.get("hosts"):
            out += ["", f"CVEs: {_t(cves['now']['words'])} (read {cves['now']['at'] or '-'})", "",
                    "| host | side | advisory | CVEs | before | after | now |",
                    "|---|---|---|---|---|---|---|"]
            for host, h in cves["hosts"].items():
                for a in h["advisories"]:
                    out.append(f"| {_c(host)} | {h['side'] or '-'} | {_c(a['id'])} | "
                               f"{', '.join(a['cves']) or '-'} | {a['before'] or '-'} | "
                               f"{a['after'] or '-'} | {a['now']} |")
        if s.get("converge"):
            out += ["", f"- converge: {_t(s['converge'].get('message'))}"]
        out.append("")
    out += ["## Rollbacks", ""]
    out += [
        f"- {r['at']} {_t(r['service'])}: {_t(r['from'])} → {_t(r['to'])} by "
        f"{_t(r['actor'])}{_os_user(r)} ({_t(r['command'])}: {_t(r['reason'])})"
        for r in doc["rollbacks"]
    ] or ["- none"]
    return "\n".join(out) + "\n"


def _html(doc: dict[str, Any]) -> str:
    body = html.escape(_markdown(doc))
    title = html.escape(f"Campaign {doc['campaign']}")
    return (
        f"<!doctype html>\n<html><head><meta charset='utf-8'><title>{title}</title></head>"
        f"<body><pre>{body}</pre>\n<script type='application/json' id='evidence'>"
        f"{html.escape(json.dumps(doc, default=str))}</script></body></html>\n"
    )


def write_report(doc: dict[str, Any], fmt: str, output: Path) -> Path:
    """Write with mode 0600, atomically, never through a symlink (`safe_write`)."""
    return write_file(output, render(doc, fmt), make_parents=True)


def _t(value: Any) -> str:
    """Free text as one visible line (control characters escaped)."""
    return one_line(None if value is None else str(value))


def _c(value: Any) -> str:
    """A Markdown table cell."""
    return table_cell(None if value is None else str(value))


def _os_user(rec: dict[str, Any]) -> str:
    """ (OS user, via sudo) next to the claimed actor, when the record has them."""
    user, sudo = rec.get("os_user"), rec.get("sudo_user")
    if not user:
        return ""
    return f" (OS user {_t(user)}" + (f", sudo from {_t(sudo)})" if sudo else ")")


def _audit_head(doc: dict[str, Any]) -> str:
    audit = doc["audit"]
    return str(audit.get("head") or f"{audit['records']}:{audit['head_hash']}")


def default_report_path(reports_dir: Path, doc: dict[str, Any], fmt: str) -> Path:
    suffix = "openvex.json" if fmt == "openvex" else fmt
    return reports_dir / f"{doc['run_id']}.{suffix}"
