"""A nesting-depth budget for parsed JSON and YAML documents.

`json.loads` and PyYAML's composer recurse once per level: a document of a few KB nested a
thousand deep raises `RecursionError` (not a `ValueError`), which no parser caller expects,
and less deep documents still recurse through every later walk (pydantic, our own checks).
Every reader of untrusted JSON/YAML (config and campaign files, advisory feeds) parses
through here and gets one `TooDeep` naming the depth instead. Stdlib only.
"""

from __future__ import annotations

import json
from typing import Any

MAX_DEPTH = 64
"""Deeper than any document we read legitimately (bluegreen.yml: ~6, an OSV record: ~7)."""


class TooDeep(ValueError):
    """A document nested deeper than the budget."""

    def __init__(self, limit: int) -> None:
        super().__init__(f"nested deeper than {limit} levels")
        self.limit = limit


def depth_over(doc: Any, limit: int = MAX_DEPTH) -> bool:
    """True when lists/mappings in `doc` nest deeper than `limit` (iterative: no recursion)."""
    stack: list[tuple[Any, int]] = [(doc, 1)]
    while stack:
        value, depth = stack.pop()
        if isinstance(value, dict):
            children: Any = value.values()
        elif isinstance(value, list | tuple):
            children = value
        else:
            continue
        if depth > limit:
            return True
        stack.extend((child, depth + 1) for child in children if isinstance(child, dict | list))
    return False


def check_depth(doc: Any, limit: int = MAX_DEPTH) -> Any:
    """`doc` itself, or TooDeep."""
    if depth_over(doc, limit):
        raise TooDeep(limit)
    return doc


def loads_json(text: str | bytes, limit: int = MAX_DEPTH) -> Any:
    """`json.loads` with the budget: TooDeep (a ValueError) instead of RecursionError."""
    try:
        doc = json.loads(text)
    except RecursionError:
        raise TooDeep(limit) from None
    return check_depth(doc, limit)
