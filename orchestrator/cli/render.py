"""Drawing results for the terminal: JSON documents, live progress (rich, imported only by
the commands that show it), and the host x check tables of verify and drift.

Everything the CLI writes passes `VisibleControls` (installed by `guard_terminal` when any
command starts): host and feed text cannot reach the operator's terminal as escape
sequences, whichever command prints it (`text.terminal`: control characters shown as
`\\x1b`..., the CLI's own colours kept). Fields from hosts are also made one line
(`text.one_line`) where they are drawn, so a newline cannot forge a row of a table."""

from __future__ import annotations

import io
import json
import logging
import sys
import warnings
from typing import Any, TextIO

import click

from orchestrator.cli.context import witness_now
from orchestrator.text import one_line, terminal


class VisibleControls(io.TextIOBase):
    """A text stream that writes `text.terminal(s, colours=True)` to the stream it wraps."""

    def __init__(self, stream: TextIO) -> None:
        super().__init__()
        self.wrapped = stream

    def write(self, s: str) -> int:
        if not isinstance(s, str):  # click asks whether a stream takes bytes this way
            raise TypeError(f"write() argument must be str, not {type(s).__name__}")
        self.wrapped.write(terminal(s, colours=True))
        return len(s)

    def flush(self) -> None:
        self.wrapped.flush()

    def isatty(self) -> bool:
        return self.wrapped.isatty()

    def fileno(self) -> int:
        return self.wrapped.fileno()

    def writable(self) -> bool:
        return True

    @property
    def encoding(self) -> str:  # type: ignore[override]
        return getattr(self.wrapped, "encoding", None) or "utf-8"

    @property
    def errors(self) -> str | None:  # type: ignore[override]
        return getattr(self.wrapped, "errors", None) or "strict"

    def close(self) -> None:  # the wrapped stream is not ours to close
        try:
            self.flush()
        except (OSError, ValueError):
            pass


def _show_warning(message: Warning | str, category: type[Warning], filename: str,
                  lineno: int, file: TextIO | None = None, line: str | None = None) -> None:
    """Python warnings (python-debian's about a malformed changelog or control file, whose
    text comes from a feed or a host) as one visible line."""
    click.echo(f"warning: {one_line(str(message))} ({category.__name__}, "
               f"{one_line(filename)}:{lineno})", err=True)


class _OneLineLog(logging.Handler):
    """python-debian logs what it could not parse in a changelog or a control file (a
    feed's or a package's text) at WARNING: one visible line each, on stderr."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            click.echo(f"warning: {one_line(record.getMessage())} ({record.name})", err=True)
        except Exception:  # noqa: BLE001 - logging must never break the command
            self.handleError(record)


_DEBIAN_LOG = _OneLineLog(logging.WARNING)


def guard_terminal() -> None:
    """Wrap stdout and stderr in `VisibleControls` (once) and route warnings (Python's and
    python-debian's log) through it, one visible line each."""
    if not isinstance(sys.stdout, VisibleControls):
        sys.stdout = VisibleControls(sys.stdout)
    if not isinstance(sys.stderr, VisibleControls):
        sys.stderr = VisibleControls(sys.stderr)
    warnings.showwarning = _show_warning
    debian = logging.getLogger("debian")
    if _DEBIAN_LOG not in debian.handlers:
        debian.addHandler(_DEBIAN_LOG)
        debian.propagate = False


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
            out.print(f"   [dim]{esc(str(ev.data['host'])):<16}[/] [{style}]{status:<11}[/] "
                      f"{esc(str(ev.data.get('task') or ''))}")
        else:
            out.print(f"   {esc(ev.message)}")


def esc(text: str) -> str:
    """Host text for rich: one visible line, rich's markup escaped."""
    from rich.markup import escape

    return escape(one_line(text))




def render_results(results: list[Any], hosts: tuple[str, ...]) -> None:
    """A table host x check: one block per host, a mark per check, evidence for failures."""
    grouped: dict[str, list[Any]] = {h: [] for h in hosts}
    for r in results:
        grouped.setdefault(r.host, []).append(r)
    for host, rows in grouped.items():
        bad = sum(1 for r in rows if r.status != "pass")
        head = click.style("ok", fg="green") if rows and not bad else click.style("FAIL", fg="red")
        click.echo(f"  {one_line(host)}  {head}  ({len(rows) - bad}/{len(rows)} passed)")
        if not rows:
            click.echo("    " + click.style("error", fg="red") + "  no results for this host")
        for r in sorted(rows, key=lambda r: (r.status == "pass", r.check)):
            mark = click.style(f"{r.status:<5}", fg="green" if r.status == "pass" else "red")
            line = f"    {mark}  {one_line(r.check)}"
            if r.status != "pass":
                line += f"\n           {one_line(r.evidence)}"
            click.echo(line)




def render_drift(report: Any) -> None:
    for host, why in sorted(report.errors.items()):
        click.echo(f"  {one_line(host)}  " + click.style("error", fg="red") + f"  {one_line(why)}")
    for host, diffs in report.by_host().items():
        if host in report.errors:
            continue
        if not diffs:
            click.echo(f"  {one_line(host)}  " + click.style("ok", fg="green"))
            continue
        click.echo(f"  {one_line(host)}  " + click.style(f"{len(diffs)} difference(s)", fg="red"))
        for d in diffs:
            click.echo(f"    {one_line(d.describe())}")


