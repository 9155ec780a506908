"""What every driver's settings share: how a bad value is reported, and the checks of
plain fields.

A driver's settings (under `router:` in bluegreen.yml, discriminated by `kind`) are a
plain frozen dataclass beside its driver (`haproxy/settings.py`, `command/settings.py`)
that checks itself on construction and keeps the `RouterSettings` contract of `base.py`:
pydantic validates it as part of bluegreen.yml (types, unknown keys via
`__pydantic_config__ = STRICT`), and the rollback fast path rebuilds it from the
validated-config snapshot (`orchestrator.config.snapshot`) without importing pydantic.
"""

from __future__ import annotations

import re
from typing import Any

STRICT: dict[str, Any] = {"extra": "forbid"}
"""`__pydantic_config__` of every settings class: unknown keys are errors."""


class SettingError(ValueError):
    """A bad value of one field; `field` lets the config loader name `router.<field>` (a
    dotted path is taken from where the error is raised); `fix`, when given, is the fix."""

    def __init__(self, field_name: str, problem: str, *, fix: str | None = None) -> None:
        super().__init__(problem)
        self.field = field_name
        self.fix = fix


HOST = re.compile(r"[A-Za-z0-9._:-]+")
USER = re.compile(r"[A-Za-z0-9._-]+")


def check_text(owner: object, name: str, *, max_len: int | None = None,
               pattern: re.Pattern[str] | None = None, what: str = "") -> None:
    value = getattr(owner, name)
    if not isinstance(value, str) or not value:
        raise SettingError(name, "must be non-empty text")
    if max_len is not None and len(value) > max_len:
        raise SettingError(name, f"at most {max_len} characters")
    if pattern is not None and not pattern.fullmatch(value):
        raise SettingError(name, f"{value!r} is not {what}")


def check_number(owner: object, name: str, *, low: float, high: float,
                 low_open: bool = False) -> None:
    value = getattr(owner, name)
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise SettingError(name, "must be a number")
    if value < low or value > high or (low_open and value == low):
        bound = f"greater than {low}" if low_open else f"at least {low}"
        raise SettingError(name, f"must be {bound} and at most {high}, got {value}")
