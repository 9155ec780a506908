"""The two sides of a service. Tiny on purpose: imported by the fast paths (rollback)."""

from __future__ import annotations

from typing import Literal

Side = Literal["blue", "green"]
SIDES: tuple[Side, Side] = ("blue", "green")


def other_side(side: Side) -> Side:
    return "green" if side == "blue" else "blue"
