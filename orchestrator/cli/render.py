"""Drawing results for the terminal: JSON documents, live progress (rich, imported only by
the commands that show it), and the host x check tables of verify and drift."""

from __future__ import annotations

import json
from typing import Any

import click

from orchestrator.cli.context import witness_now


def emit_json(doc: Any) -> None:
    witnessed = witness_now()
    if witnessed is not None and isinstance(doc, dict):
        doc = {**doc, "audit_witness": witnessed}
    click.echo(json.dumps(doc, indent=2, sort_keys=False, default=str))


def say(msg: str) -> None:
    click.echo(f"  {msg}", err=True)


class RolloutProgress:
    """Live progress of a rollout on stderr (rich): steps with their duration, and per host
    each Ansible task's outcome as the runner reports it."""

    _STYLE = {"ok": "green", "changed": "yellow", "failed": "bold red",
              "unreachable": "bold red", "started": "dim"}

    def __init__(self, quiet: bool) -> None:
        self.quiet = quiet
        self._console: Any = None
        self._step_started: dict[str, float] = {}

    def _out(self) -> Any:
        if self._console is None:
            from rich.console import Console

            self._console = Console(stderr=True, highlight=False)
        return self._console

    def __call__(self, ev: Any) -> None:
        import time

        if self.quiet:
            return
        out = self._out()
        if ev.phase == "begin":
            self._step_started[ev.step] = time.monotonic()
            out.print(f"[bold cyan]▶ {ev.step}[/]")
        elif ev.phase == "end":
            took = time.monotonic() - self._step_started.get(ev.step, time.monotonic())
            out.print(f"[bold green]✔ {ev.step}[/] {esc(ev.message)} [dim]({took:.1f}s)[/]")
        elif ev.step == "patch" and ev.phase == "progress":
            status = ev.data.get("status", "")
            if status in ("skipped", "started") or not ev.data.get("host"):
                return
            style = self._STYLE.get(status, "white")
            out.print(f"   [dim]{ev.data['host']:<16}[/] [{style}]{status:<11}[/] "
                      f"{esc(str(ev.data.get('task') or ''))}")
        else:
            out.print(f"   {esc(ev.message)}")


def esc(text: str) -> str:
    from rich.markup import escape

    return escape(text)




def render_results(results: list[Any], hosts: tuple[str, ...]) -> None:
    """A table host x check: one block per host, a mark per check, evidence for failures."""
    grouped: dict[str, list[Any]] = {h: [] for h in hosts}
    for r in results:
        grouped.setdefault(r.host, []).append(r)
    for host, rows in grouped.items():
        bad = sum(1 for r in rows if r.status != "pass")
        head = click.style("ok", fg="green") if rows and not bad else click.style("FAIL", fg="red")
        click.echo(f"  {host}  {head}  ({len(rows) - bad}/{len(rows)} passed)")
        if not rows:
            click.echo("    " + click.style("error", fg="red") + "  no results for this host")
        for r in sorted(rows, key=lambda r: (r.status == "pass", r.check)):
            mark = click.style(f"{r.status:<5}", fg="green" if r.status == "pass" else "red")
            line = f"    {mark}  {r.check}"
            if r.status != "pass":
                line += f"\n           {r.evidence}"
            click.echo(line)




def render_drift(report: Any) -> None:
    for host, why in sorted(report.errors.items()):
        click.echo(f"  {host}  " + click.style("error", fg="red") + f"  {why}")
    for host, diffs in report.by_host().items():
        if host in report.errors:
            continue
        if not diffs:
            click.echo(f"  {host}  " + click.style("ok", fg="green"))
            continue
        click.echo(f"  {host}  " + click.style(f"{len(diffs)} difference(s)", fg="red"))
        for d in diffs:
            click.echo(f"    {d.describe()}")


