"""Run a user's plain pytest-testinfra file against targets, strictly.

The file uses testinfra's `host` fixture and also runs unmodified under
`pytest FILE --hosts=ssh://NAME --ssh-config=CFG`. We run exactly that in a subprocess, with
an ssh_config we generate (our known_hosts, StrictHostKeyChecking yes, BatchMode yes), and
turn the JUnit XML into results per host per test.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ET
from collections.abc import Sequence
from pathlib import Path

from orchestrator.probes.base import CheckResult, ProbeReport, ProbeTarget, Status

_SAFE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")


def render_ssh_config(targets: Sequence[ProbeTarget]) -> str:
    """An ssh_config with one strict `Host` block per target."""
    blocks: list[str] = []
    for t in targets:
        if not _SAFE_NAME.match(t.name):
            raise ValueError(f"target name {t.name!r} cannot be used as an ssh Host alias")
        lines = [
            f"Host {t.name}",
            f"  HostName {t.address}",
            f"  Port {t.port}",
            f"  User {t.user}",
            f'  UserKnownHostsFile "{t.known_hosts}"',
            "  GlobalKnownHostsFile /dev/null",
            "  StrictHostKeyChecking yes",
            "  IdentitiesOnly yes",
            "  BatchMode yes",
            "  PasswordAuthentication no",
            "  KbdInteractiveAuthentication no",
            f"  ConnectTimeout {max(1, int(t.connect_timeout))}",
            "  ServerAliveInterval 5",
            "  ServerAliveCountMax 2",
            "  ControlMaster no",
        ]
        if t.key_file:
            lines.append(f'  IdentityFile "{t.key_file}"')
        blocks.append("\n".join(lines))
    return "\n\n".join(blocks) + "\n"


def suite_command(
    suite: str | Path,
    targets: Sequence[ProbeTarget],
    ssh_config: str | Path,
    junit_xml: str | Path,
    *,
    python: str = sys.executable,
) -> list[str]:
    """The pytest command line (isolated from any surrounding pytest config/conftest)."""
    suite = Path(suite).resolve()
    hosts = ",".join(f"ssh://{t.name}" for t in targets)
    return [
        python,
        "-m",
        "pytest",
        str(suite),
        f"--hosts={hosts}",
        f"--ssh-config={ssh_config}",
        "-p",
        "no:cacheprovider",
        f"--junitxml={junit_xml}",
        "-q",
        "-c",
        os.devnull,
        f"--rootdir={suite.parent}",
        f"--confcutdir={suite.parent}",
    ]


def _host_of(test_name: str, names: Sequence[str]) -> str | None:
    """The target named in a test id like `test_x[ssh://web1]` or `test_x[ssh://web1-param]`."""
    m = re.search(r"\[(.*)\]$", test_name)
    if not m:
        return None
    params = m.group(1)
    best: str | None = None
    for name in names:
        tag = f"ssh://{name}"
        if params == tag or params.startswith(tag + "-") or f"-{tag}" in params:
            if best is None or len(name) > len(best):
                best = name
    return best


def parse_junit(
    xml_text: str, names: Sequence[str], *, suite_name: str, seconds_default: float = 0.0
) -> list[CheckResult]:
    """JUnit XML -> one CheckResult per test per host (tests without a host: every host)."""
    root = ET.fromstring(xml_text)
    results: list[CheckResult] = []
    for case in root.iter("testcase"):
        name = case.get("name", "?")
        base = re.sub(r"\[.*\]$", "", name)
        classname = case.get("classname", "")
        cid = f"suite:{suite_name}::{base}"
        try:
            secs = float(case.get("time", seconds_default))
        except ValueError:
            secs = seconds_default
        status: Status = "pass"
        evidence = "passed"
        for tag, st in (("failure", "fail"), ("error", "error"), ("skipped", "error")):
            el = case.find(tag)
            if el is not None:
                status = "fail" if st == "fail" else "error"
                text = el.get("message") or ""
                if not text:
                    lines = (el.text or "").strip().splitlines()
                    text = lines[-1] if lines else tag
                evidence = f"{tag}: {text}"[:2000]
                break
        host = _host_of(name, names)
        hosts = [host] if host is not None else list(names)
        if host is None and classname:
            evidence = f"{evidence} ({classname})"
        for h in hosts:
            results.append(CheckResult(h, cid, status, evidence, secs))
    return results


def run_suite(
    suite: str | Path,
    targets: Sequence[ProbeTarget],
    deadline_s: float,
    *,
    python: str = sys.executable,
    workdir: str | Path | None = None,
) -> ProbeReport:
    """Run a pytest-testinfra file against `targets` with strict ssh; results per host/test."""
    started_at = time.time()
    t0 = time.monotonic()
    names = tuple(t.name for t in targets)
    suite = Path(suite)
    suite_name = suite.name
    if not targets:
        return ProbeReport([], started_at, 0.0, ())

    def all_error(evidence: str) -> ProbeReport:
        took = time.monotonic() - t0
        rs = [CheckResult(n, f"suite:{suite_name}", "error", evidence, took) for n in names]
        return ProbeReport(rs, started_at, took, names)

    if not suite.is_file():
        return all_error(f"suite file not found: {suite}")
    with tempfile.TemporaryDirectory(prefix="bg-suite-", dir=workdir) as tmp:
        cfg = Path(tmp) / "ssh_config"
        cfg.write_text(render_ssh_config(targets))
        cfg.chmod(0o600)
        xml_path = Path(tmp) / "junit.xml"
        cmd = suite_command(suite, targets, cfg, xml_path, python=python)
        proc = subprocess.Popen(
            cmd,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
            cwd=tmp,
        )
        try:
            out, _ = proc.communicate(timeout=max(0.1, deadline_s))
        except subprocess.TimeoutExpired:
            # Our own process group only (pytest and its ssh children).
            os.killpg(proc.pid, signal.SIGKILL)
            proc.communicate()
            return all_error(f"suite deadline exceeded after {deadline_s:g} s")
        output = out.decode(errors="replace")
        if not xml_path.exists():
            return all_error(f"pytest exited {proc.returncode} without results: {output[-800:]}")
        results = parse_junit(xml_path.read_text(), names, suite_name=suite_name)
    if not results:
        return all_error(f"pytest exited {proc.returncode} with no tests: {output[-800:]}")
    took = time.monotonic() - t0
    seen = {r.host for r in results}
    for n in names:
        if n not in seen:
            results.append(
                CheckResult(n, f"suite:{suite_name}", "error", "no test results for host", took)
            )
    if proc.returncode not in (0, 1) and all(r.status == "pass" for r in results):
        results.append(
            CheckResult(
                names[0], f"suite:{suite_name}", "error", f"pytest exited {proc.returncode}", took
            )
        )
    return ProbeReport(results, started_at, took, names)


class SuiteProbe:
    """The `Probe` contract over a user's pytest-testinfra file."""

    def __init__(self, suite: str | Path, *, python: str = sys.executable) -> None:
        self.suite = Path(suite)
        self.python = python

    def run(self, targets: Sequence[ProbeTarget], deadline_s: float) -> ProbeReport:
        return run_suite(self.suite, targets, deadline_s, python=self.python)
