"""A third-party-style testinfra file that needs pytest itself: fixtures (its own and its
conftest's), parametrize, marks and a class. Nothing of bluegreen in it; it checks lab
hosts (demo-web, the lab's sshd settings)."""

import pytest

pytestmark = pytest.mark.security


@pytest.fixture(scope="module")
def hostname(host):
    return host.check_output("hostname")


def test_debian_12(os_release):
    assert os_release["VERSION_ID"].strip('"') == "12"


@pytest.mark.parametrize("name", ["openssh-server", "sudo"])
def test_installed(host, name):
    assert host.package(name).is_installed


@pytest.mark.parametrize("port", [22])
def test_listens(host, port):
    assert host.socket(f"tcp://{port}").is_listening


def test_named_like_the_inventory(hostname):
    assert hostname.count("-") == 2  # service-side-n


def test_root_login_without_password_only(sshd_config):
    assert sshd_config.contains("PermitRootLogin prohibit-password")


class TestDemoWeb:
    def test_running(self, host):
        assert host.service("demo-web").is_running

    def test_no_telnet(self, host):
        assert not host.package("telnet").is_installed
