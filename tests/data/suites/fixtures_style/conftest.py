"""A third-party suite's conftest: fixtures built on testinfra's `host`."""

import pytest


@pytest.fixture(scope="module")
def os_release(host):
    return dict(
        line.split("=", 1)
        for line in host.file("/etc/os-release").content_string.splitlines()
        if "=" in line
    )


@pytest.fixture
def sshd_config(host):
    return host.file("/etc/ssh/sshd_config.d/bluegreen-lab.conf")
