"""One redaction policy: what counts as a secret, and how it is taken out.

Every place that keeps or shows data calls this module: the state store (params, journal
data, audit before/after), the inventory reader (secret variables never leave it), patch
failure messages, reports and webhooks (URLs). Stdlib only: the state store, and with it
the rollback path, imports it.

- `is_secret_key(name)`: a variable or field name that holds a secret: it contains
  password, passwd, secret, token, vault, private, authorization or apikey, or has the word
  pass or key (db_password, ansible_ssh_pass, GITHUB_TOKEN, ssh_private_key, api-key,
  tls_key; not passenger_count or keep).
- `redact(obj)`: a copy of a JSON-like value with every value under a secret key -> "***".
- `redact_text(text)`: free text (error messages, command output) with secrets ->
  "<redacted>": the known secret values, `NAME=value` / `NAME: value` for secret names,
  `Authorization:` headers, URL user-info, URL query values, PEM private keys, long
  random-looking tokens.
- known secret values: `remember_secret_values(values)` (the inventory reader gives the
  values of every variable it treats as secret) and the values of environment variables
  with secret names (`BLUEGREEN_DB_PASSWORD`, ...). `scrub(text)` / `scrub_data(obj)` take
  out only those and URL credentials: what the state store applies to all it keeps.
- `redact_url(url)`: user-info and query values -> "***"; `safe_url(url)`: scheme and host.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Collection, Iterable, Iterator
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

REDACTED = "***"
"""What replaces a value under a secret key (structured data)."""
REDACTED_TEXT = "<redacted>"
"""What replaces a secret found in free text."""

# Substrings that make a name secret wherever they stand ("mypassword", "VAULT_ID") ...
_SECRET_PARTS = ("password", "passwd", "secret", "token", "vault", "private", "authorization",
                 "apikey")
# ... and words that do only as a whole word of the name ("ansible_ssh_pass", "api-key"),
# so that passenger_count, keep or keyboard stay readable.
_SECRET_WORDS = ("pass", "key")

_CAMEL = re.compile(r"([a-z0-9])([A-Z])")
_WORD_SPLIT = re.compile(r"[^a-z0-9]+")


def is_secret_key(name: str) -> bool:
    """True for names that obviously hold secrets (password, token, vault, api_key, ...)."""
    lowered = _CAMEL.sub(r"\1_\2", name).lower()
    if any(part in lowered for part in _SECRET_PARTS):
        return True
    return any(word in _SECRET_WORDS for word in _WORD_SPLIT.split(lowered))


def redact(obj: Any) -> Any:
    """A copy of `obj` where every value under a secret key is "***".

    Recurses through dicts, lists and tuples (tuples become lists); the input is not
    changed. Keys are names (`is_secret_key`), values are not inspected: use
    `redact_text` for free text."""
    return _walk(obj, lambda leaf: leaf)


def _walk(obj: Any, leaf: Callable[[Any], Any]) -> Any:
    """`obj` copied with values under secret keys -> "***" and every other leaf -> leaf()."""
    if isinstance(obj, dict):
        return {
            key: REDACTED if is_secret_key(str(key)) else _walk(value, leaf)
            for key, value in obj.items()
        }
    if isinstance(obj, list | tuple):
        return [_walk(item, leaf) for item in obj]
    return leaf(obj)


_NAME_CHARS = r"[\w.-]"
_VALUE = r"(\"[^\"]*\"|'[^']*'|[^\s&]+)"  # a URL query's next pair is not the value
# (authorization has its own pattern: its value is a scheme and then the credentials)
_PARTS_RE = "|".join(
    (*(p for p in _SECRET_PARTS if p != "authorization"), "api[_-]key", "credential")
)
# NAME=value or NAME: value for every secret name ...
_ASSIGN_RE = re.compile(
    rf"(?i)\b({_NAME_CHARS}*(?:{_PARTS_RE}){_NAME_CHARS}*)(\s*[:=]\s*){_VALUE}"
)
_WORD_ASSIGN_RE = re.compile(
    rf"(?i)\b((?:{_NAME_CHARS}*[_.-])?(?:{'|'.join(_SECRET_WORDS)})(?:[_.-]{_NAME_CHARS}*)?)"
    rf"(\s*[:=]\s*){_VALUE}"
)
# ... and "NAME value" only for names no sentence uses otherwise ("password hunter2"; not
# "private network" or "vault file")
_SPACED_RE = re.compile(
    rf"(?i)\b({_NAME_CHARS}*(?:password|passwd|secret|token|api[_-]?key|private[_-]?key"
    rf"|credential){_NAME_CHARS}*)(\s+){_VALUE}"
)
_AUTH_HEADER_RE = re.compile(
    r"(?i)\b(authorization\s*[:=]\s*(?:(?:basic|bearer|digest|token|negotiate)\s+)?)\S+"
)
_URL_CRED_RE = re.compile(r"(?i)\b([a-z][a-z0-9+.-]*://)[^/\s:@]+:[^/\s@]+@")
_URL_QUERY_VALUE_RE = re.compile(r"(?i)(\b[a-z][a-z0-9+.-]*://[^\s?#]*\?)([^\s#]*)")
_QUERY_PAIR_RE = re.compile(r"([^&=;]+)=([^&;]*)")
_PEM_RE = re.compile(
    r"-----BEGIN [A-Z ]*PRIVATE KEY-----.*?(?:-----END [A-Z ]*PRIVATE KEY-----|$)", re.S
)
# long random-looking runs (keys, tokens); paths and words have separators or no digits
_LONG_TOKEN_RE = re.compile(
    r"\b(?=[A-Za-z0-9+_-]*\d)(?=[A-Za-z0-9+_-]*[A-Za-z])[A-Za-z0-9+_-]{40,}={0,2}"
)
_MIN_KNOWN = 4  # shorter "secrets" would blank out ordinary words


# -- values known to be secret (issue 15) ---------------------------------------------------
# The values themselves, wherever they turn up in free text: a script's stderr, an Ansible
# message, a reason. Kept for the life of the process, never written anywhere.
_remembered: set[str] = set()
_from_env: frozenset[str] | None = None


def remember_secret_values(values: Iterable[Any]) -> None:
    """Values this process must never store or show: the inventory reader passes the values
    of every variable it treats as secret (strings inside lists and maps too)."""
    for value in values:
        _remembered.update(v for v in _strings(value) if len(v) >= _MIN_KNOWN)


def known_secret_values() -> frozenset[str]:
    """The remembered values, and those of environment variables with a secret name
    (`BLUEGREEN_DB_PASSWORD`, `DB_TOKEN`, ...; read once)."""
    global _from_env
    if _from_env is None:
        _from_env = frozenset(
            v for k, v in os.environ.items() if is_secret_key(k) and len(v) >= _MIN_KNOWN
        )
    return frozenset(_remembered) | _from_env


def scrub(text: str) -> str:
    """`text` without the known secret values and without URL credentials or query values.
    No guessing (unlike `redact_text`): safe for data that must stay readable (hashes,
    fingerprints), applied by the store to everything it keeps."""
    for value in sorted(known_secret_values(), key=len, reverse=True):
        if value in text:
            text = text.replace(value, REDACTED_TEXT)
    if "://" in text:
        text = _URL_CRED_RE.sub(rf"\1{REDACTED_TEXT}@", text)
        text = _URL_QUERY_VALUE_RE.sub(
            lambda m: m.group(1) + _QUERY_PAIR_RE.sub(rf"\1={REDACTED_TEXT}", m.group(2)), text
        )
    return text


def scrub_data(obj: Any) -> Any:
    """`redact` (secret keys) and `scrub` (every string value) over JSON-like data."""
    return _walk(obj, lambda leaf: scrub(leaf) if isinstance(leaf, str) else leaf)


def _strings(value: Any) -> Iterator[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for item in value.values():
            yield from _strings(item)
    elif isinstance(value, list | tuple | set | frozenset):
        for item in value:
            yield from _strings(item)
    elif isinstance(value, int | float) and not isinstance(value, bool):
        yield str(value)


def redact_text(text: str, *, known: Collection[str] | None = None) -> str:
    """`text` with anything that looks like a secret replaced by <redacted>.

    `known`: values known to be secret, removed wherever they stand (default: every value
    `known_secret_values()` holds); values shorter than 4 characters are ignored."""
    if known is None:
        known = known_secret_values()
    for value in sorted((v for v in known if len(v) >= _MIN_KNOWN), key=len, reverse=True):
        text = text.replace(value, REDACTED_TEXT)
    text = _PEM_RE.sub("<redacted private key>", text)
    text = _URL_CRED_RE.sub(rf"\1{REDACTED_TEXT}@", text)
    text = _URL_QUERY_VALUE_RE.sub(
        lambda m: m.group(1) + _QUERY_PAIR_RE.sub(rf"\1={REDACTED_TEXT}", m.group(2)), text
    )
    text = _AUTH_HEADER_RE.sub(rf"\1{REDACTED_TEXT}", text)
    for pattern in (_ASSIGN_RE, _WORD_ASSIGN_RE, _SPACED_RE):
        text = pattern.sub(rf"\1\2{REDACTED_TEXT}", text)
    return _LONG_TOKEN_RE.sub(REDACTED_TEXT, text)


def redact_url(url: str) -> str:
    """The URL with its user-info and every query value replaced by "***" (the names stay:
    they say what was there)."""
    parts = urlsplit(url)
    netloc = parts.netloc
    if "@" in netloc:
        netloc = f"{REDACTED}@{netloc.rpartition('@')[2]}"
    query = urlencode([(k, REDACTED) for k, _ in parse_qsl(parts.query, keep_blank_values=True)],
                      safe="*")
    return urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))


def safe_url(url: str) -> str:
    """scheme://host[:port]/… : nothing of path, query or user-info (for webhook URLs, which
    often carry their token in the path)."""
    parts = urlsplit(url)
    port = f":{parts.port}" if parts.port else ""
    return f"{parts.scheme}://{parts.hostname or ''}{port}/…"
