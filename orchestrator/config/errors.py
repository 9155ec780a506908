"""pydantic's validation errors -> one `BadInput`: file, dotted field path, and the fix.

Shared by every file we validate with pydantic (bluegreen.yml, campaign files): the path is
walked along the model types, so union tags never show and unknown keys get a "did you
mean". Pydantic's own error dump never reaches the user.
"""

from __future__ import annotations

import dataclasses
import difflib
import types
import typing
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ValidationError

from orchestrator.config.files import describe
from orchestrator.errors import BadInput


def clean_message(msg: str) -> str:
    for prefix in ("Value error, ", "Assertion failed, "):
        if msg.startswith(prefix):
            return msg[len(prefix) :]
    return msg


def _unwrap(tp: Any) -> Any:
    """Strip Annotated[...] and Optional[...] (X | None)."""
    while True:
        origin = typing.get_origin(tp)
        if origin is Annotated:
            tp = typing.get_args(tp)[0]
            continue
        if origin in (typing.Union, types.UnionType):
            members = [a for a in typing.get_args(tp) if a is not type(None)]
            if len(members) == 1:
                tp = members[0]
                continue
        return tp


def _fields(tp: Any) -> dict[str, Any] | None:
    """Field name -> declared type of a pydantic model or a dataclass; None for other types."""
    if isinstance(tp, type) and issubclass(tp, BaseModel):
        return {name: f.annotation for name, f in tp.model_fields.items()}
    if isinstance(tp, type) and dataclasses.is_dataclass(tp):
        hints = typing.get_type_hints(tp)
        return {f.name: hints[f.name] for f in dataclasses.fields(tp)}
    return None


def _union_models(tp: Any) -> list[type]:
    tp = _unwrap(tp)
    if typing.get_origin(tp) in (typing.Union, types.UnionType):
        return [a for a in typing.get_args(tp) if _fields(a) is not None]
    return []


def _kind_tag(model: type) -> str | None:
    annotation = (_fields(model) or {}).get("kind")
    args = typing.get_args(annotation)
    return str(args[0]) if typing.get_origin(annotation) is Literal and args else None


@dataclass
class _Located:
    path: str  # dotted, user-facing: services.web.health[0].url
    parent: Any  # the model/type that holds the last element, or None
    last: Any  # the last loc element (field name, key or index)
    in_key: bool  # the error is about a mapping key, not its value


def _locate(loc: Sequence[int | str], root: type[BaseModel]) -> _Located:
    """Walk pydantic's loc along the model types: a dotted path without union tags."""
    parts: list[str] = []
    tp: Any = root
    parent: Any = None
    last: Any = None
    in_key = False
    for part in loc:
        if part == "[key]":
            in_key = True
            continue
        models = _union_models(tp) if tp is not None else []
        if models:
            tagged = [m for m in models if _kind_tag(m) == part]
            if tagged:
                tp = tagged[0]
                continue  # a discriminator tag, not something the user wrote
        base = _unwrap(tp) if tp is not None else None
        parent, last = base, part
        if isinstance(part, int):
            parts.append(f"[{part}]")
        else:
            parts.append(("." if parts else "") + str(part))
        fields = _fields(base)
        if fields is not None:
            tp = fields.get(str(part))
        elif typing.get_origin(base) is dict:
            tp = typing.get_args(base)[1]
        elif typing.get_origin(base) in (list, tuple):
            tp = typing.get_args(base)[0]
        else:
            tp = None
    return _Located("".join(parts) or "(top level)", parent, last, in_key)


def _model_fields_of(tp: Any) -> list[str]:
    return list(_fields(_unwrap(tp)) or {})


def _format_error(
    err: Any, name: str, root: type[BaseModel], example: str
) -> tuple[str, str]:
    """One pydantic error -> (message, fix); `example` is the file a fix points at."""
    etype: str = err.get("type", "")
    loc = err.get("loc", ())
    setting_error = (err.get("ctx") or {}).get("error")
    field_name = getattr(setting_error, "field", None)
    if etype == "value_error" and isinstance(field_name, str):  # a SettingError
        loc = (*loc, *field_name.split("."))
    where = _locate(loc, root)
    path = where.path
    value = err.get("input")
    generic_fix = f"correct `{path}` in {name} (see {example} for a complete example)"

    if etype in ("extra_forbidden", "unexpected_keyword_argument"):
        allowed = _model_fields_of(where.parent)
        close = difflib.get_close_matches(str(where.last), allowed, n=1, cutoff=0.6)
        guess = f" — did you mean {close[0]!r}?" if close else ""
        listed = f" (allowed: {', '.join(allowed)})" if allowed else ""
        fix = f"rename it to {close[0]!r}" if close else "remove it or fix its spelling"
        return f"{name}: {path}: unknown field{guess}{listed}", fix

    if etype == "missing":
        parent_path = path.rpartition(".")[0] if "." in path else ""
        under = f" under `{parent_path}:`" if parent_path else " at the top level"
        return (
            f"{name}: {path}: required field is missing",
            f"add `{where.last}:`{under} (see {example})",
        )

    if etype == "too_short" and isinstance(value, dict | list):
        return (
            f"{name}: {path}: must not be empty",
            f"add at least one entry under `{path}:` (see {example})",
        )

    if etype in ("union_tag_invalid", "union_tag_not_found"):
        models = _union_models(_field_type_at(loc, root))
        kinds = [k for k in (_kind_tag(m) for m in models) if k]
        allowed_kinds = ", ".join(kinds)
        if etype == "union_tag_not_found":
            return (
                f"{name}: {path}.kind: required field is missing (allowed kinds: {allowed_kinds})",
                f"add `kind:` with one of: {allowed_kinds}",
            )
        tag = (err.get("ctx") or {}).get("tag", "")
        close = difflib.get_close_matches(str(tag), kinds, n=1)
        guess = f" — did you mean {close[0]!r}?" if close else ""
        return (
            f"{name}: {path}.kind: unknown kind {tag!r}{guess} (allowed kinds: {allowed_kinds})",
            f"set `kind:` to one of: {allowed_kinds}",
        )

    if etype == "literal_error":
        expected = (err.get("ctx") or {}).get("expected", "")
        return (
            f"{name}: {path}: must be {expected}, got {describe(value)}",
            f"set `{where.last}: {expected}`".replace("'", ""),
        )

    if etype in ("model_type", "model_attributes_type", "dict_type", "dataclass_type"):
        return (
            f"{name}: {path}: expected a mapping (key: value), got {describe(value)}",
            generic_fix,
        )

    if etype in ("list_type", "tuple_type"):
        return f"{name}: {path}: expected a list, got {describe(value)}", generic_fix

    if where.in_key:
        msg = clean_message(str(err.get("msg", "invalid key")))
        return f"{name}: {path}: invalid key: {msg}", f"rename the key `{where.last}`"

    msg = clean_message(str(err.get("msg", "invalid value")))
    if etype == "string_type" and isinstance(value, int | float) and not isinstance(value, bool):
        return (
            f"{name}: {path}: expected text, got {describe(value)}",
            f'quote it (`{where.last}: "{value}"`) so YAML keeps it as text;'
            " an unquoted 1.10 would become the number 1.1",
        )
    if etype in ("value_error", "assertion_error"):
        return f"{name}: {path}: {msg}", getattr(setting_error, "fix", None) or generic_fix
    return f"{name}: {path}: {msg} (got {describe(value)})", generic_fix


def _field_type_at(loc: Sequence[int | str], root: type[BaseModel]) -> Any:
    """The declared type of the field at `loc` (for union errors, whose loc ends at the field)."""
    tp: Any = root
    for part in loc:
        base = _unwrap(tp)
        fields = _fields(base)
        if fields is not None:
            if str(part) not in fields:
                return None
            tp = fields[str(part)]
        elif typing.get_origin(base) is dict:
            tp = typing.get_args(base)[1]
        elif typing.get_origin(base) in (list, tuple):
            tp = typing.get_args(base)[0]
        else:
            models = _union_models(tp)
            tagged = [m for m in models if _kind_tag(m) == part]
            if not tagged:
                return None
            tp = tagged[0]
    return tp


def validation_to_bad_input(
    exc: ValidationError, name: str, root: type[BaseModel], *, example: str, limit: int = 5
) -> BadInput:
    """The first error (with its fix) and up to `limit - 1` more, as one BadInput."""
    errors = exc.errors(include_url=False)
    formatted = [_format_error(e, name, root, example) for e in errors]
    message, fix = formatted[0]
    others = [m for m, _ in formatted[1:limit]]
    if others:
        message += "".join(f"\n  also: {m}" for m in others)
    if len(formatted) > limit:
        message += f"\n  ... and {len(formatted) - limit} more problems"
    return BadInput(message, hint=fix)
