"""A campaign run written into a real SQLite store, step by step, as the runner and the
rollout write it: one service done, one whose verification failed (its failures only in
the audit record, as on the lab), a rollback. With `hostile=True` every free text that a
host, a config or a person can set carries markup, quotes and control characters."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from orchestrator.analysis.model import Judgement, Measurement, Verdict
from orchestrator.campaign.journal import Journal, Step
from orchestrator.rollout.records import CanaryStep
from orchestrator.state.models import AuditEntryInput
from orchestrator.state.sqlite import SQLiteStateStore
from orchestrator.testing import FrozenClock

VULNERABLE = {"demo-openssl": "3.0.11-1", "demo-web": "1.0.0"}
FIXED = {"demo-openssl": "3.0.15-1", "demo-web": "1.0.1"}
MARKUP = '<img src=x onerror="document.title=1"><script>document.title=2</script>'
LINK = "[verified OK](https://evil.example/)"


def hostile_text(what: str) -> str:
    return f"{what}{MARKUP}{LINK}&amp;\"'\u202e"


def bake_steps(store: SQLiteStateStore, clock: FrozenClock, run_id: str,
               h: Callable[[str], str] = lambda s: s) -> None:
    """Two exposure steps journaled as the canary step journals them (`canary:N`, the
    analysis's own records): 20 % inconclusive (too little volume) then passed, 50 %
    passed; the metric's name and query come from bluegreen.yml (`h` makes them hostile)."""
    metric, query = h("error_ratio"), h("sum(rate(errors{SEL}[8s]))")

    def measured(verdict: Verdict, canary: float, volume: float, why: str) -> dict[str, Any]:
        m = Measurement(metric, verdict, why, canary, 0.0, volume, volume * 4,
                        {"canary": query.replace("SEL", 'backend="web_green"'),
                         "baseline": query.replace("SEL", 'backend="web_blue"')})
        return Judgement(verdict, (m,)).as_dict()

    for number, percent, verdict, judged in (
            (1, 20, "pass", [measured("inconclusive", 0.0, 12, "volume 12 below 20"),
                             measured("pass", 0.0, 121, h("0 within the twin's 0 + 0.01"))]),
            (2, 50, "pass", [measured("pass", 0.0021, 400, "0.0021 within the twin's 0 + 0.01")])):
        clock.advance(0.1)
        store.journal_begin(run_id, f"canary:{number}", {"percent": percent, "seconds": 6})
        clock.advance(6.0)
        store.journal_end(run_id, f"canary:{number}", CanaryStep(
            number, percent, verdict, str(judged[-1]["why"]), 6.0, "prometheus",
            tuple(judged)).as_dict())


def write_campaign(store: SQLiteStateStore, clock: FrozenClock, *, hostile: bool = False
                   ) -> dict[str, Any]:
    """The run "c1" of campaign "evidence"; returns the names used (hosts, checks, ...)."""
    h = hostile_text if hostile else (lambda s: s)
    web_hosts = [h("web-green-1"), h("web-green-2")]
    api_hosts = [h("api-green-1")]
    bad_check = h("command:curl-ready")
    bad_evidence = h("exit 1: not ready ")
    reason = h("INC-4711")
    fixed = {p: h(v) for p, v in FIXED.items()}  # as the hosts report them
    advisory = {"id": h("DSA-1"), "cves": ["CVE-2026-0001"], "severity": "high",
                "packages": dict(FIXED)}
    params = {"name": "evidence", "file": "/tmp/evidence.yml",
              "waves": [["web"], ["api"]],
              "campaign": {"advisories": [advisory], "window": {"always": True},
                           "approval": {"mode": "manual", "at": "before_flip"},
                           "notify": {"webhooks": ["https://hooks.example.net/x?token=s3cret"]}}}
    store.create_run("c1", "campaign", None, params, h("alice"))
    journal = Journal(store, "c1")
    store.audit_append(AuditEntryInput(actor=h("bob"), command="campaign.approve",
                                       reason=h("CHG-1"),
                                       after={"run_id": "c1", "point": "before_flip"}))

    def rollout(service: str, run_id: str, hosts: list[str], *, verify_ok: bool) -> None:
        store.create_run(run_id, "rollout", service, {"campaign_run": "c1"}, "alice")
        journal.begin(Step.of_service(service), {
            "child_run": run_id, "before": {x: dict(VULNERABLE) for x in hosts}})
        for step, seconds in (("precheck", 0.4), ("patch", 2.3), ("verify", 1.2)):
            clock.advance(0.1)
            store.journal_begin(run_id, step, {"at": clock.now.isoformat()})
            clock.advance(seconds)
            if step == "patch":
                store.journal_end(run_id, step, {
                    "patch_level": "demo-openssl=3.0.15-1",
                    "hosts": {x: {"versions": dict(fixed)} for x in hosts}})
            elif step == "verify":
                results = [{"host": x, "check": c, "status": "pass", "evidence": "ok"}
                           for x in hosts for c in ("package:demo-openssl", "service:demo-web")]
                if not verify_ok:
                    failures = [{"host": hosts[0], "check": bad_check, "status": "fail",
                                 "evidence": bad_evidence}]
                    store.audit_append(AuditEntryInput(
                        actor="alice", command="verify", service=service,
                        after={"side": "green", "ok": False,
                               "summary": f"1 of {len(results) + 1} checks failed",
                               "failures": failures}))
                    store.finish_run(run_id, "failed", f"{service}: green failed verification")
                    journal.end(Step.of_service(service), {"status": "failed", "exit_code": 3})
                    return
                store.journal_end(run_id, step, {"summary": f"{len(results)} checks passed",
                                                 "results": results})
            else:
                store.journal_end(run_id, step, {"live": "blue", "standby": "green"})
        bake_steps(store, clock, run_id, h)
        for step, seconds in (("flip", 0.05), ("bake", 10.0)):
            clock.advance(0.1)
            store.journal_begin(run_id, step, {})
            clock.advance(seconds)
            store.journal_end(run_id, step, {"from": "blue", "to": "green"} if step == "flip"
                              else {"requests": 40, "failed": 0})
        store.finish_run(run_id, "done", f"{service}: green is live")
        journal.end(Step.of_service(service), {"status": "done", "from": "blue", "to": "green"})

    rollout("web", "r-web", web_hosts, verify_ok=True)
    rollout("api", "r-api", api_hosts, verify_ok=False)
    store.finish_run("c1", "failed", "api failed:3")
    clock.advance(5)
    store.audit_append(AuditEntryInput(actor=h("carol"), command="rollback", service="web",
                                       reason=reason, before={"live": "green"},
                                       after={"live": "blue"}))
    return {"web_hosts": web_hosts, "api_hosts": api_hosts, "bad_check": bad_check,
            "bad_evidence": bad_evidence, "reason": reason, "advisory": advisory["id"]}
