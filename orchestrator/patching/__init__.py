"""Patching one side of a service with Ansible (see runner.py)."""

from orchestrator.patching.runner import (
    HostPatchResult,
    PackageChange,
    PatchProgress,
    PatchResult,
    patch_hosts,
    redact,
)

__all__ = [
    "HostPatchResult",
    "PackageChange",
    "PatchProgress",
    "PatchResult",
    "patch_hosts",
    "redact",
]
