"""`bluegreen doctor`: every check a first rollout depends on, each with pass/fail and one
fix line; the rollout's precheck runs the ones of its service before any host is touched.

One idea per module: `report` (the typed result), `hosts` (SSH as the probes and Ansible
connect, sudo, root), `routing` (the router: its own setup, the backends, the live side,
the confirm header), `health` (the services' health URLs), `local` (state store, audit
witness), `run` (what `doctor` and the precheck run).
"""

from orchestrator.doctor.report import Check, Report

__all__ = ["Check", "Report"]
