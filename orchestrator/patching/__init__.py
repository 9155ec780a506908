"""Patching one side of a service with Ansible.

runner.py runs the playbook through ansible-runner, events.py reads its events, ssh.py owns
the run's SSH master connections, changes.py compares the hosts' package databases before
and after, step.py is the rollout's patch step (all of it together).
"""

from orchestrator.patching.changes import PackageDelta, SideChanges
from orchestrator.patching.events import redact
from orchestrator.patching.results import (
    HostPatchResult,
    PackageChange,
    PatchProgress,
    PatchResult,
)
from orchestrator.patching.runner import patch_hosts
from orchestrator.patching.step import SidePatch, patch_side, step_record

__all__ = [
    "HostPatchResult",
    "PackageChange",
    "PackageDelta",
    "PatchProgress",
    "PatchResult",
    "SideChanges",
    "SidePatch",
    "patch_hosts",
    "patch_side",
    "redact",
    "step_record",
]
