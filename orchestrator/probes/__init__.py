"""Probe engine: prove a side is healthy and secured, per host, per check.

Built-in declarative checks (`checks`) run over one strict SSH connection per host
(`connection`, `backend`, `engine`); user suites are plain pytest-testinfra files (`suites`).
One probe run shares one connection per host among all its parts (`pool`).
No data, a timeout or an unreachable host is a failure, never a pass.
"""

from orchestrator.probes.base import CheckResult, Probe, ProbeReport, ProbeTarget, Status
from orchestrator.probes.checks import Check, parse_checks
from orchestrator.probes.connection import CommandTimeout, ProbeConnectionError, SSHConnection
from orchestrator.probes.engine import CheckProbe, run_checks
from orchestrator.probes.pool import ConnectionPool
from orchestrator.probes.suites import SuiteProbe, run_suite

__all__ = [
    "Check",
    "CheckProbe",
    "CheckResult",
    "CommandTimeout",
    "ConnectionPool",
    "Probe",
    "ProbeConnectionError",
    "ProbeReport",
    "ProbeTarget",
    "SSHConnection",
    "Status",
    "SuiteProbe",
    "parse_checks",
    "run_checks",
    "run_suite",
]
