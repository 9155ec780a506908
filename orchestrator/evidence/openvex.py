"""The campaign's evidence as an OpenVEX document (https://openvex.dev, v0.2.0).

One statement per CVE and host, from what the hosts had installed when the report was
made: `fixed` (every package of the advisory at or above its fixed version), `affected`
(with the action to take: the host is live, or a standby without traffic),
`not_affected` (none of the advisory's packages installed: component_not_present), or
`under_investigation` (the host could not be read). Each statement's product is the host;
its subcomponents are the advisory's packages with their installed versions as purls.
The document names the campaign run and the audit chain's head it was made at.

Every status rests on the host's own package database (`dpkg-query` over SSH): root on a
host can make it report any version, so each statement's `status_notes` says so (`fixed`
means "the host says it has the fixed version", not a measurement of the running code).
"""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version
from typing import Any
from urllib.parse import quote

from orchestrator.errors import BadInput

CONTEXT = "https://openvex.dev/ns/v0.2.0"
HOST_WORD = ("the status rests on the host's own package database (dpkg, read over SSH): "
             "root on the host can make it report any version")
_STATUS = {"fixed": "fixed", "open": "affected", "not_installed": "not_affected",
           "unknown": "under_investigation"}


def purl(package: str, package_version: str) -> str:
    return f"pkg:deb/debian/{package}@{quote(package_version, safe='.-_~')}"


def _bluegreen_version() -> str:
    try:
        return version("bluegreen")
    except PackageNotFoundError:
        return "unknown"


def openvex(doc: dict[str, Any]) -> dict[str, Any]:
    """An OpenVEX document from a report (`campaign.report.build_report`)."""
    head = f"{doc['audit']['records']}:{doc['audit']['head_hash']}"
    where = f"campaign {doc['campaign']} run {doc['run_id']}"
    statements: list[dict[str, Any]] = []
    for svc, s in doc["services"].items():
        cves = s.get("cves") or {}
        now = cves.get("now") or {}
        live = now.get("live")
        for host, h in (cves.get("hosts") or {}).items():
            have = h.get("versions_now") or {}
            side = h.get("side")
            role = "live" if side == live else "standby (no traffic)"
            for a in h["advisories"]:
                status = _STATUS[a["now"]]
                subs = [
                    {"@id": purl(p, have[p]), "identifiers": {"purl": purl(p, have[p])}}
                    for p in sorted(a["packages"])
                    if isinstance(have.get(p), str) and p != "error"
                ]
                product: dict[str, Any] = {"@id": f"urn:bluegreen:host:{host}"}
                if subs:
                    product["subcomponents"] = subs
                notes = (
                    f"{svc} {side or '?'} side, {role}, read at {now.get('at') or '-'}; "
                    f"advisory {a['id']}: " + ", ".join(
                        f"{p} {have.get(p, 'absent')} (fixed {v})" for p, v in a["packages"].items()
                    ) + f"; {where}; audit head {head}; {HOST_WORD}"
                )
                for cve in a["cves"]:
                    st: dict[str, Any] = {
                        "vulnerability": {"name": cve},
                        "products": [product],
                        "status": status,
                        "status_notes": notes,
                        "timestamp": now.get("at") or doc["generated_at"],
                    }
                    if status == "affected":
                        fix = ", ".join(f"{p}={v}" for p, v in a["packages"].items())
                        st["action_statement"] = (
                            f"install {fix} on {host}: "
                            + ("it takes traffic now: run the campaign again or roll forward"
                               if side == live else
                               "a standby without traffic; converge it or patch it before "
                               "it takes traffic")
                        )
                        st["action_statement_timestamp"] = st["timestamp"]
                    elif status == "not_affected":
                        st["justification"] = "component_not_present"
                    statements.append(st)
    if not statements:
        raise BadInput(
            f"{where} names no CVE on any host: an OpenVEX document needs at least one statement",
            hint="list the CVEs under each advisory's `cves:` (e.g. `campaign new` does)",
        )
    return {
        "@context": CONTEXT,
        "@id": f"urn:bluegreen:openvex:{doc['run_id']}:{doc['audit']['head_hash'] or 'empty'}",
        "author": f"bluegreen ({doc.get('actor') or 'unknown'})",
        "role": "patch orchestrator",
        "timestamp": doc["generated_at"],
        "version": 1,
        "tooling": f"bluegreen {_bluegreen_version()}: {where}; audit chain head {head}",
        "statements": statements,
    }
