"""Crash-test hooks at the boundaries where a crash is most dangerous.

`BLUEGREEN_FAILPOINT=NAME` makes the process `kill -9` itself when it reaches failpoint
NAME: the rollout's step boundaries (`patch:begin`, `flip:end`, ...) and the traffic
kernel's `traffic:locked` (the traffic lock just taken, nothing read yet),
`traffic:intent` (flip journaled, router untouched), `traffic:router` (router
changed, store not yet) and `traffic:recorded` (both done, lock still held). A kernel
failpoint also answers to `NAME:COMMAND`, e.g. `traffic:router:rollout.auto-rollback`, to
hit one caller only.

Tests in the same process replace `hook` (e.g. with a function raising `Crash`): it is
then called at every failpoint, with its name. Code with catch-all handlers lets `Crash`
through untouched (no cleanup, no "failed" record), as a real kill -9 would.
"""

from __future__ import annotations

import os
from collections.abc import Callable

ENV = "BLUEGREEN_FAILPOINT"


class Crash(BaseException):  # noqa: N818 - a simulated death, not an error to handle
    """Raised by a test's hook at a failpoint: the process "dies" there."""


hook: Callable[[str], None] | None = None
"""When set, called at every failpoint instead of the environment check."""


def hit(name: str, command: str | None = None) -> None:
    names = (name,) if command is None else (name, f"{name}:{command}")
    if hook is not None:
        for each in names:
            hook(each)
        return
    if os.environ.get(ENV) in names:
        import signal

        os.kill(os.getpid(), signal.SIGKILL)
