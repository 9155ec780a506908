"""Field types of our files (service, group and package names, versions, serial, paths)
and their validators: each says in its error what a good value looks like."""

from __future__ import annotations

import re
import zoneinfo
from datetime import timedelta
from typing import Annotated, Any

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
)

_SERVICE_NAME_RE = re.compile(r"^[a-z][a-z0-9_-]{0,62}$")
_GROUP_NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_-]{0,127}$")
_PACKAGE_NAME_RE = re.compile(r"^[a-z0-9][a-z0-9+.-]*$")
# Debian ([epoch:]upstream[-revision], with ~ and +) and RPM (with _ and ~) versions.
# No whitespace, no shell metacharacters, no globs.
_PACKAGE_VERSION_RE = re.compile(r"^(?:[0-9]+:)?[A-Za-z0-9][A-Za-z0-9.+~_-]*$")
_SERIAL_PERCENT_RE = re.compile(r"^(?:[1-9][0-9]?|100)%$")
SAFE_USER_RE = re.compile(r"^[A-Za-z0-9._][A-Za-z0-9._-]{0,63}$")
_DURATION_RE = re.compile(r"^(?:(\d+)d)?(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?$")


def _check_service_name(value: str) -> str:
    if not _SERVICE_NAME_RE.match(value):
        raise ValueError(
            f"invalid service name {value!r}: use 1-63 characters, lowercase letters, digits,"
            " '_' or '-', starting with a letter"
        )
    return value


def _check_group_name(value: str) -> str:
    if not _GROUP_NAME_RE.match(value):
        raise ValueError(
            f"invalid inventory group name {value!r}: use letters, digits, '_' or '-',"
            " starting with a letter or '_'"
        )
    return value


def _check_package_name(value: str) -> str:
    if len(value) > 128 or not _PACKAGE_NAME_RE.match(value):
        raise ValueError(
            f"invalid package name {value!r}: use lowercase letters, digits, '+', '.', '-',"
            " starting with a letter or digit"
        )
    return value


def _check_package_version(value: str) -> str:
    if len(value) > 128 or not _PACKAGE_VERSION_RE.match(value):
        raise ValueError(
            f"invalid package version {value!r}: a Debian/RPM version such as '1.0.1-2' or"
            " '1:3.0.11-1~deb12u2' (letters, digits, '.', '+', '~', '_', '-', optional"
            " 'EPOCH:'; no spaces, globs or shell characters)"
        )
    return value


def _check_serial(value: Any) -> int | str:
    # bool is an int subclass: `serial: yes` is a mistake, not 1.
    if isinstance(value, bool):
        raise ValueError(
            f"serial must be a number of hosts or a percentage like '50%', got {value!r}"
        )
    if isinstance(value, str) and value.strip().isdigit():
        value = int(value.strip())
    if isinstance(value, int):
        if not 1 <= value <= 10000:
            raise ValueError(f"serial must be between 1 and 10000 hosts, got {value}")
        return value
    if isinstance(value, str):
        text = value.strip()
        if _SERIAL_PERCENT_RE.match(text):
            return text
    raise ValueError(
        f"serial must be a number of hosts (1-10000) or a percentage from '1%' to '100%', got {value!r}"
    )


def _check_url_path(value: str) -> str:
    if not value.startswith("/") or any(c.isspace() for c in value):
        raise ValueError(f"url_path must start with '/' and contain no spaces, got {value!r}")
    if len(value) > 2048:
        raise ValueError(f"url_path is {len(value)} characters long; the limit is 2048")
    return value


def parse_duration(value: Any) -> timedelta:
    """`90` (seconds), "45s", "30m", "2h", "7d", "1h30m" -> timedelta."""
    if isinstance(value, timedelta):
        return value
    if isinstance(value, bool):
        raise ValueError(f"expected a duration like '2h' or '30m', got {value!r}")
    if isinstance(value, int | float):
        if value < 0:
            raise ValueError(f"a duration cannot be negative, got {value}")
        return timedelta(seconds=value)
    text = str(value).strip().replace(" ", "")
    if text.startswith("P"):  # ISO 8601, as stored by model_dump(mode="json")
        from pydantic import TypeAdapter

        try:
            return TypeAdapter(timedelta).validate_python(text)
        except ValidationError:
            pass
    match = _DURATION_RE.match(text)
    if not text or not match or not any(match.groups()):
        raise ValueError(
            f"expected a duration like '45s', '30m', '2h', '7d' or '1h30m', got {value!r}"
        )
    d, h, m, s = (int(g or 0) for g in match.groups())
    return timedelta(days=d, hours=h, minutes=m, seconds=s)


def _check_timezone(value: str) -> str:
    try:
        zoneinfo.ZoneInfo(value)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        raise ValueError(
            f"unknown timezone {value!r}: use an IANA name such as 'UTC' or 'Europe/Berlin'"
        ) from None
    return value


def no_bool(value: Any) -> Any:
    """For numbers: YAML `yes`/`true` is a mistake, not 1."""
    if isinstance(value, bool):
        raise ValueError(f"must be a number, got the boolean {value}")
    return value


ServiceName = Annotated[str, AfterValidator(_check_service_name)]
GroupName = Annotated[str, AfterValidator(_check_group_name)]
PackageName = Annotated[str, AfterValidator(_check_package_name)]
PackageVersion = Annotated[str, AfterValidator(_check_package_version)]
Serial = Annotated[int | str, BeforeValidator(_check_serial)]
NonEmptyStr = Annotated[str, Field(min_length=1, max_length=4096)]
UrlPath = Annotated[str, AfterValidator(_check_url_path)]
Duration = Annotated[timedelta, BeforeValidator(parse_duration)]
TimeZone = Annotated[str, AfterValidator(_check_timezone)]


class StrictModel(BaseModel):
    """The base of our file models: unknown keys are errors, values are immutable."""

    model_config = ConfigDict(extra="forbid", frozen=True, defer_build=True)
