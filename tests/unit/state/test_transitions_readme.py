"""The README's state machine table is the table of `orchestrator/state/transitions.py`,
rendered: one row per event and next state (the states it moves from, and those it keeps,
recording only), with who may cause it. Changing the table without the README (or the
other way round) fails here; `BLUEGREEN_UPDATE_README=1` writes the rendered table into
README.md between its markers."""

from __future__ import annotations

import os
from pathlib import Path

from orchestrator.state.models import SIDE_STATES, SideStateName
from orchestrator.state.transitions import EVENTS, TABLE

README = Path(__file__).resolve().parents[3] / "README.md"
BEGIN = "<!-- state machine: generated from orchestrator/state/transitions.py -->"
END = "<!-- end of the state machine -->"


def _states(states: set[SideStateName]) -> str:
    if set(states) == set(SIDE_STATES):
        return "any state"
    missing = [s for s in SIDE_STATES if s not in states]
    if len(missing) == 1:
        return f"any but `{missing[0]}`"
    return ", ".join(f"`{s}`" for s in SIDE_STATES if s in states)


def render() -> str:
    """The table as Markdown: event | from | next state | who may cause it."""
    lines = ["| event | from | next state | who may cause it |", "|---|---|---|---|"]
    for event in EVENTS:
        rule = TABLE[event]
        targets: dict[SideStateName, set[SideStateName]] = {}
        for from_state, to_state in rule.moves.items():
            targets.setdefault(to_state, set()).add(from_state)
        for to_state in [s for s in SIDE_STATES if s in targets]:
            to = ("the state it had before its `patch_begun` (restored)" if rule.restores
                  else f"`{to_state}`")
            lines.append(f"| `{event}` | {_states(targets[to_state])} | {to} | {rule.who} |")
        if rule.keeps:
            lines.append(f"| `{event}` | {_states(set(rule.keeps))} | (kept: the event is "
                         f"recorded, the state stays) | {rule.who} |")
    lines.append("| any other | | refused (`TransitionRefused`, nothing recorded) | |")
    return "\n".join(lines)


def test_the_readme_shows_the_state_machine_of_the_code() -> None:
    text = README.read_text(encoding="utf-8")
    assert text.count(BEGIN) == 1 and text.count(END) == 1, (
        f"README.md must hold the state machine table between {BEGIN!r} and {END!r}")
    head, rest = text.split(BEGIN)
    shown, tail = rest.split(END)
    wanted = f"\n{render()}\n"
    if shown != wanted and os.environ.get("BLUEGREEN_UPDATE_README"):
        README.write_text(head + BEGIN + wanted + END + tail, encoding="utf-8")
        return
    assert shown == wanted, ("README.md's state machine table differs from "
                             "orchestrator/state/transitions.py; write it with "
                             "BLUEGREEN_UPDATE_README=1 pytest " + __file__ + "\nwanted:" + wanted)


def test_every_state_and_event_is_in_the_rendered_table() -> None:
    table = render()
    for event in EVENTS:
        assert f"| `{event}` |" in table
    for state in SIDE_STATES:
        assert f"`{state}`" in table or "any state" in table
