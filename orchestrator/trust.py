"""Colleagues' files are code: refuse them when someone else could have changed them.

The inventory (with its group_vars/host_vars), playbooks, suites, router scripts and
bluegreen.yml all run as bluegreen's user: Ansible renders templates in the inventory
(`lookup('pipe', ...)` runs a command as soon as the inventory is read), a playbook or a
suite is code, a router script is a program. So, as sshd's StrictModes does for
authorized_keys, `check_trusted(path, what)` refuses such a file *before it is read* when
the file, or any directory above it up to /, is

- writable by group or others (a directory with the sticky bit, such as /tmp, is allowed:
  others cannot rename or remove what they do not own in it), or
- owned by a user other than root and the one running bluegreen.

The error names the file, its mode or owner, and the fix (`chmod go-w FILE`, `chown`).
Stdlib only (every layer may use it).
"""

from __future__ import annotations

import os
import pwd
import stat
from collections.abc import Iterator
from pathlib import Path

from orchestrator.errors import BadInput

__all__ = ["check_trusted", "check_trusted_ansible", "check_trusted_tree", "untrusted_reason"]

_MAX_TREE_ENTRIES = 20_000  # an inventory directory with more is surely the wrong one


def _user(uid: int) -> str:
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return f"uid {uid}"


def untrusted_reason(path: Path, info: os.stat_result | None = None) -> tuple[str, str] | None:
    """Why `path` itself (not its parents) cannot be trusted, and the fix; None when it can
    (or when it does not exist or is no file: the reader reports that)."""
    try:
        st = path.stat() if info is None else info
    except OSError:
        return None
    if not (stat.S_ISREG(st.st_mode) or stat.S_ISDIR(st.st_mode)):
        return None  # a device or a pipe: the reader refuses it as "not a regular file"
    me = os.geteuid()
    if st.st_uid not in (0, me):
        return (
            f"is owned by {_user(st.st_uid)}, not by {_user(me)} (who runs bluegreen) or root",
            f"review it, then `chown {_user(me)} {path}` (or keep it in a directory of your own)",
        )
    sticky_dir = stat.S_ISDIR(st.st_mode) and st.st_mode & stat.S_ISVTX
    if st.st_mode & (stat.S_IWGRP | stat.S_IWOTH) and not sticky_dir:
        who = " and ".join(
            w for bit, w in ((stat.S_IWGRP, "group"), (stat.S_IWOTH, "others")) if st.st_mode & bit
        )
        return (
            f"is writable by {who} (mode {stat.S_IMODE(st.st_mode):04o})",
            f"`chmod go-w {path}`",
        )
    return None


def _chain(path: Path) -> Iterator[Path]:
    """`path` as given (made absolute) and resolved, and every directory above both."""
    seen: set[Path] = set()
    absolute = Path(os.path.abspath(path))
    for start in (absolute, absolute.resolve()):
        for p in (start, *start.parents):
            if p not in seen:
                seen.add(p)
                yield p


def check_trusted(path: Path, what: str) -> None:
    """Raise `BadInput` (exit 2) when `path` or a directory above it could have been changed
    by someone else (see the module docstring). `what`: "inventory", "playbook", ..."""
    itself = {Path(os.path.abspath(path)), path.resolve()}
    for p in _chain(path):
        reason = untrusted_reason(p)
        if reason is None:
            continue
        problem, fix = reason
        subject = "it" if p in itself else f"the directory {p} (above it)"
        raise BadInput(
            f"{path}: refusing to read this {what}: {subject} {problem}; a {what} is code that"
            f" runs as {_user(os.geteuid())}, so only that user or root may be able to change it",
            hint=fix,
        )


def check_trusted_tree(path: Path, what: str) -> None:
    """`check_trusted` for `path` and, when it is a directory (an inventory directory,
    group_vars/), for everything below it."""
    check_trusted(path, what)
    if not path.is_dir():
        return
    count = 0
    for root, dirs, files in os.walk(path):
        for name in [*dirs, *files]:
            count += 1
            if count > _MAX_TREE_ENTRIES:
                raise BadInput(
                    f"{path}: more than {_MAX_TREE_ENTRIES} files below this {what}",
                    hint="point it at the inventory itself, not a directory above it",
                )
            entry = Path(root) / name
            reason = untrusted_reason(entry)
            if reason is not None:
                problem, fix = reason
                raise BadInput(
                    f"{entry}: refusing to read this {what} file: it {problem}; a {what} is"
                    f" code that runs as {_user(os.geteuid())}",
                    hint=fix,
                )


def check_trusted_ansible(path: Path, what: str) -> None:
    """`check_trusted_tree` for an inventory or a playbook, and for the group_vars/ and
    host_vars/ that Ansible reads beside a file of either."""
    check_trusted_tree(path, what)
    if not path.is_dir():
        for beside in ("group_vars", "host_vars"):
            if (path.parent / beside).exists():
                check_trusted_tree(path.parent / beside, what)
