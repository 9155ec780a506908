"""`reboot-pending`: no reboot-required flag, and the running kernel is the newest installed.

In bluegreen.yml (one item of a service's `checks:`)::

    - {kind: reboot-pending}
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, Literal

from orchestrator.probes.base import ProbeTarget
from orchestrator.probes.checks.base import BaseCheck, Outcome, run_command


class RebootPendingCheck(BaseCheck):
    kind: Literal["reboot-pending"]

    def outcomes(self, host: Any, target: ProbeTarget) -> Iterable[Outcome]:
        cid = self.primary_id()
        rc, out, _ = run_command(
            host,
            "if [ -e /var/run/reboot-required ]; then echo REQUIRED;"
            " cat /var/run/reboot-required.pkgs 2>/dev/null; fi",
        )
        if rc != 0:
            yield cid, "error", f"cannot test /var/run/reboot-required (rc {rc})"
            return
        if out.startswith("REQUIRED"):
            pkgs = " ".join(out.split()[1:])
            yield cid, "fail", "/var/run/reboot-required exists" + (f" ({pkgs})" if pkgs else "")
            return
        rc, running, _ = run_command(host, "uname -r")
        rc2, newest, _ = run_command(
            host,
            "ls -1 /boot/vmlinuz-* 2>/dev/null | sed 's|^/boot/vmlinuz-||' | sort -V | tail -n 1",
        )
        running, newest = running.strip(), newest.strip()
        if rc != 0 or not running:
            yield cid, "error", "cannot read the running kernel (uname -r)"
        elif not newest:
            yield (
                cid,
                "pass",
                f"no reboot-required flag; kernel {running} (installed kernels not detectable)",
            )
        elif newest != running:
            yield cid, "fail", f"running kernel {running} but newest installed is {newest}"
        else:
            yield cid, "pass", f"no reboot-required flag; running newest kernel {running}"
