"""A third-party-style pytest-testinfra file: plain `host` fixture, nothing of bluegreen.

Runs unmodified under `pytest test_thirdparty_style.py --hosts=ssh://NAME --ssh-config=CFG`
and through bluegreen (a `suites:` entry of a service, or `orchestrator.probes.run_suite`).
"""


def test_sshd_process_running(host):
    assert host.process.filter(comm="sshd")


def test_shadow_mode(host):
    assert host.file("/etc/shadow").mode == 0o640


def test_telnet_not_installed(host):
    assert not host.package("telnet").is_installed
