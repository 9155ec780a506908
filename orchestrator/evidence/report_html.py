"""The campaign report as one self-contained HTML file (Jinja2, autoescaped).

Every value shown comes from hosts, configs, feeds or people, so all of it is untrusted:
the environment autoescapes everything, and free text also goes through `one_line` (no
control or bidi characters). The file has its CSS inline and no script, fetches nothing,
prints, and reads on a phone. Status is shown by colour and by word. Each service's steps
are drawn as an inline SVG whose bars are the steps' real durations.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

from orchestrator.evidence.bake import measurement_rows, step_words
from orchestrator.evidence.model import CampaignReport, StepSpan, tone
from orchestrator.text import one_line

if TYPE_CHECKING:
    from jinja2 import Environment

TEMPLATES = Path(__file__).with_name("templates")

# timeline geometry (SVG user units)
LABEL_W, BAR_W, ROW_H, TOP = 80, 420, 22, 6


@dataclass(frozen=True)
class Bar:
    """One step drawn on the timeline: where, how wide, and what it says."""

    label: str
    x: float
    width: float
    y: float
    tone: str
    words: str
    """The duration and outcome, e.g. "2.3 s ok"."""


@dataclass(frozen=True)
class Timeline:
    bars: list[Bar]
    height: float
    width: float
    total_seconds: float
    description: str
    """What the picture says, for screen readers and for text-only readers."""


def timeline(steps: list[StepSpan]) -> Timeline | None:
    """Bars on one time axis from the first step's start to the last step's end."""
    if not steps:
        return None
    t0 = min(s.started_at for s in steps)
    t1 = max((s.ended_at or s.started_at) for s in steps)
    total = max((t1 - t0).total_seconds(), 0.001)
    bars = []
    for i, s in enumerate(steps):
        offset = (s.started_at - t0).total_seconds()
        dur = s.seconds
        width = 0.0 if dur is None else dur / total * BAR_W
        words = (f"{dur:.1f} s" if dur is not None else "not ended") + f" {s.outcome}"
        bars.append(Bar(label=s.name, x=LABEL_W + offset / total * BAR_W,
                        width=max(width, 2.0), y=TOP + i * ROW_H,
                        tone="bad" if s.name == "rollback" else tone(
                            "done" if s.outcome == "ok" else s.outcome),
                        words=words))
    described = "; ".join(f"{b.label} {b.words}" for b in bars)
    return Timeline(bars=bars, height=TOP * 2 + len(bars) * ROW_H,
                    width=LABEL_W + BAR_W + 110, total_seconds=total, description=described)


def _text(value: Any) -> str:
    """Free text as one visible line (autoescaping then makes it inert markup)."""
    return one_line(None if value is None else str(value))


@cache
def environment() -> Environment:
    from jinja2 import Environment, FileSystemLoader, StrictUndefined

    env = Environment(
        loader=FileSystemLoader(str(TEMPLATES)),
        autoescape=True,  # every template, whatever its name: all values are untrusted
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["t"] = _text
    env.filters["tone"] = tone
    env.filters["when"] = lambda d: "-" if d is None else d.strftime("%Y-%m-%d %H:%M:%S UTC")
    env.filters["secs"] = lambda s: "-" if s is None else f"{s:.1f} s"
    env.globals["timeline"] = timeline
    env.globals["measurement_rows"] = measurement_rows
    env.globals["step_words"] = step_words
    return env


def render_html(report: CampaignReport) -> str:
    return environment().get_template("report.html.j2").render(r=report)
