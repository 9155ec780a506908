"""The one terminal policy: whatever a command prints passes `VisibleControls`; host text
cannot erase lines, set the title or write the clipboard, on a real terminal (a pty)."""

from __future__ import annotations

import sys

from orchestrator.probes.base import CheckResult
from tests.support.cli import on_tty

HOSTILE = ("\x1b[2K\x1b[1A\r\x1b[32m  web-blue-1  ok  (5/5 passed)\x1b]52;c;cm0gLXJmIH4=\x07"
           "\x1b]0;owned\x07")


def test_every_print_passes_the_one_policy_on_a_terminal() -> None:
    """Host text printed the wrong way (raw click.echo, print, a warning, rich) and the
    right way (render_results): on a tty no escape sequence survives but the CLI's colours."""
    result = CheckResult("web-blue-1", "command:x" + HOSTILE, "fail", "exit 1" + HOSTILE)
    code = f"""
import warnings, click
from orchestrator.cli.render import RolloutProgress, guard_terminal, render_results
from orchestrator.probes.base import CheckResult
guard_terminal()
hostile = {HOSTILE!r}
render_results([CheckResult(*{(result.host, result.check, result.status, result.evidence)!r})],
               ("web-blue-1",))
click.echo("raw echo: " + hostile)
click.echo("raw stderr: " + hostile, err=True)
print("print: " + hostile)
warnings.warn("python-debian says: " + hostile)
class Ev:
    step, phase, message, data = "patch", "note", "rich: " + hostile, {{}}
RolloutProgress(quiet=False)(Ev())
import logging
logging.getLogger("debian.changelog").warning("Unexpected line while parsing: " + hostile)
from orchestrator.cli.exit import fail
from orchestrator.errors import BluegreenError
try:
    fail(BluegreenError("bad: " + hostile, hint="fix: " + hostile), False)
except SystemExit:
    pass
"""
    rc, out = on_tty([sys.executable, "-c", code], timeout=60)
    assert rc == 0, out
    kept = out
    for colour in ("\x1b[31m", "\x1b[32m", "\x1b[0m", "\x1b[1m", "\x1b[22m", "\x1b[39m",
                   "\x1b[33m", "\x1b[2m", "\x1b[1;32m", "\x1b[1;31m", "\x1b[1;36m"):
        kept = kept.replace(colour, "")
    assert "\x1b" not in kept and "\x07" not in kept, repr(out)
    assert "\x1b[32m" in out  # a terminal still gets the CLI's own colours
    assert "rich: \\x1b[2K\\x1b[1A\\r\\x1b[32m" in out  # rich wraps the rest at 80 columns
    for where in ("raw echo: ", "raw stderr: ", "print: ", "python-debian says: "):
        line = next(ln for ln in out.splitlines() if where in ln)
        assert "\\x1b[2K" in line and "\\x1b]52;c;" in line and "\\x1b]0;owned\\x07" in line, line
    assert "warning: python-debian says: " in out
    logged = next(ln for ln in out.splitlines() if "Unexpected line while parsing" in ln)
    assert logged.startswith("warning: Unexpected line while parsing: \\x1b[2K"), logged
    assert "\x1b[32m" not in logged and logged.endswith("(debian.changelog)"), logged
    # an error quoting a host: its text shown, not even its colour obeyed
    error = next(ln for ln in out.splitlines() if "error: bad: " in ln)
    assert "\\x1b[2K\\x1b[1A\\r\\x1b[32m  web-blue-1" in error and "\x1b[32m" not in error, error
    # render_results: the forged row is inside the evidence line, visibly escaped
    assert "  web-blue-1  \x1b[31mFAIL\x1b[0m  (0/1 passed)" in out
    assert "\\r\\x1b[32m  web-blue-1  ok  (5/5 passed)" in out
