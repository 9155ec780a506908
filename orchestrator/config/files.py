"""Reading the files users give us: bluegreen.yml, campaign files, drift baselines.

One implementation of what every such file gets: a size limit checked before reading, UTF-8
(a BOM is accepted), YAML or JSON parsing, and a top level that must be a mapping. Every
problem is one `BadInput` naming the file (and line/column where there is one) with a fix.

Import-light: stdlib only at import time; PyYAML is imported by the YAML parser itself, so a
JSON reader (baselines) never pays for it.
"""

from __future__ import annotations

import hashlib
import json
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from orchestrator.errors import BadInput
from orchestrator.nesting import MAX_DEPTH, TooDeep, loads_json


@dataclass(frozen=True)
class FileKind:
    """What a file is, for messages and limits: each kind of file we read has one."""

    what: str
    """"config file", "campaign file": the words messages use."""
    max_bytes: int
    missing_hint: str
    """The fix when the file does not exist."""
    wrong_file_hint: str
    """The fix when the path is a device, a pipe or far too big (probably the wrong file)."""
    content_hint: str
    """The fix when the content is unusable: empty, not a mapping at the top, not JSON."""
    directory_hint: str = "pass the file itself, not the directory {path}"
    """The fix when the path is a directory; `{path}` is replaced by it."""


def describe(value: Any) -> str:
    """A value as a message shows it: "a mapping", "the number 3", "the text 'x'"."""
    if value is None:
        return "nothing (null)"
    if isinstance(value, bool):
        return f"a boolean ({value})"
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list | tuple):
        return "a list"
    if isinstance(value, str):
        return f"the text {short(value)}"
    if isinstance(value, int | float):
        return f"the number {value}"
    return type(value).__name__


def short(value: Any, limit: int = 60) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def read_text(path: Path, kind: FileKind, source: str = "") -> tuple[str, str]:
    """The file's text and the sha256 of its bytes; BadInput for every problem.

    `source` says where the path came from ("given with -c"), for the messages."""
    name = str(path)
    from_where = f" ({source})" if source else ""
    try:
        st = path.stat()
    except FileNotFoundError:
        raise BadInput(
            f"{name}: {kind.what} not found{from_where}", hint=kind.missing_hint
        ) from None
    except OSError as exc:
        raise BadInput(
            f"{name}: cannot read the {kind.what}: {exc.strerror or exc}",
            hint="check the path and its permissions",
        ) from None
    if stat.S_ISDIR(st.st_mode):
        raise BadInput(
            f"{name}: is a directory, not a {kind.what}{from_where}",
            hint=kind.directory_hint.format(path=path),
        )
    if not stat.S_ISREG(st.st_mode):
        raise BadInput(
            f"{name}: is not a regular file{from_where}", hint=kind.wrong_file_hint
        )
    if st.st_size > kind.max_bytes:
        raise BadInput(
            f"{name}: {kind.what} is {st.st_size} bytes, larger than the {kind.max_bytes}"
            " byte limit; refusing to parse it",
            hint=kind.wrong_file_hint,
        )
    try:
        with path.open("rb") as fh:
            data = fh.read(kind.max_bytes + 1)
    except OSError as exc:
        raise BadInput(
            f"{name}: cannot read the {kind.what}: {exc.strerror or exc}",
            hint="check the file's permissions",
        ) from None
    if len(data) > kind.max_bytes:  # it grew after stat()
        raise BadInput(
            f"{name}: {kind.what} is larger than the {kind.max_bytes} byte limit;"
            " refusing to parse it",
            hint=kind.wrong_file_hint,
        )
    try:
        return data.decode("utf-8-sig"), hashlib.sha256(data).hexdigest()
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise BadInput(
            f"{name}:{line}: {kind.what} is not valid UTF-8 (byte 0x{data[exc.start]:02x}"
            f" at offset {exc.start}, line {line})",
            hint="save the file as UTF-8",
        ) from None


def parse_yaml_mapping(text: str, name: str, kind: FileKind) -> dict[str, Any]:
    """YAML text -> its top-level mapping (PyYAML's safe loader); BadInput with line and
    column for a syntax error, and for an empty file or another top level."""
    import yaml

    try:
        data = yaml.load(text, Loader=_depth_limited_loader())  # noqa: S506 - a SafeLoader
    except _YamlTooDeep as exc:
        line = exc.line + 1
        raise BadInput(
            f"{name}:{line}: invalid YAML: nested deeper than {MAX_DEPTH} levels (line {line})",
            hint=f"a {kind.what} nests a few levels: check line {line} (brackets or indentation)",
        ) from None
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        problem = exc.problem or exc.context or "syntax error"
        if mark is not None:
            line, col = mark.line + 1, mark.column + 1
            raise BadInput(
                f"{name}:{line}:{col}: invalid YAML: {problem} (line {line}, column {col})",
                hint=f"fix the YAML at line {line}, column {col}: check indentation, a missing"
                " ':' or an unquoted value that starts with a special character",
            ) from None
        raise BadInput(f"{name}: invalid YAML: {problem}", hint="fix the YAML syntax") from None
    except yaml.YAMLError as exc:
        raise BadInput(f"{name}: invalid YAML: {exc}", hint="fix the YAML syntax") from None
    return _mapping(data, name, kind)


def parse_json_mapping(text: str, name: str, kind: FileKind) -> dict[str, Any]:
    """JSON text -> its top-level mapping; BadInput with line and column otherwise."""
    try:
        data = loads_json(text) if text.strip() else None
    except TooDeep as exc:
        raise BadInput(f"{name}: invalid JSON: {exc}", hint=kind.content_hint) from None
    except json.JSONDecodeError as exc:
        raise BadInput(
            f"{name}:{exc.lineno}:{exc.colno}: invalid JSON: {exc.msg}"
            f" (line {exc.lineno}, column {exc.colno})",
            hint=kind.content_hint,
        ) from None
    return _mapping(data, name, kind)


class _YamlTooDeep(Exception):
    def __init__(self, line: int) -> None:
        super().__init__(line)
        self.line = line


_LOADER: type | None = None


def _depth_limited_loader() -> type:
    """PyYAML's SafeLoader whose composer stops at MAX_DEPTH nested nodes, before Python's
    recursion limit does (RecursionError is no YAMLError: it would escape as a traceback)."""
    global _LOADER
    if _LOADER is None:
        import yaml

        class Loader(yaml.SafeLoader):
            _depth = 0

            def compose_node(self, parent: Any, index: Any) -> Any:
                self._depth += 1
                try:
                    if self._depth > MAX_DEPTH:
                        raise _YamlTooDeep(self.peek_event().start_mark.line)  # type: ignore[no-untyped-call]
                    return super().compose_node(parent, index)
                finally:
                    self._depth -= 1

        _LOADER = Loader
    return _LOADER


def read_yaml_mapping(path: Path, kind: FileKind, source: str = "") -> tuple[dict[str, Any], str]:
    """`read_text` then `parse_yaml_mapping`: the mapping and the sha256 of the bytes."""
    text, digest = read_text(path, kind, source)
    return parse_yaml_mapping(text, str(path), kind), digest


def read_json_mapping(path: Path, kind: FileKind) -> dict[str, Any]:
    """`read_text` then `parse_json_mapping`."""
    text, _digest = read_text(path, kind)
    return parse_json_mapping(text, str(path), kind)


def _mapping(data: Any, name: str, kind: FileKind) -> dict[str, Any]:
    if data is None:
        raise BadInput(f"{name}: {kind.what} is empty", hint=kind.content_hint)
    if not isinstance(data, dict):
        raise BadInput(
            f"{name}: the top level must be a mapping (key: value), got {describe(data)}",
            hint=kind.content_hint,
        )
    return data
