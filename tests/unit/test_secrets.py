"""One redaction policy (orchestrator/secrets.py): which names hold secrets, structured
data redacted by key, free text by pattern, URLs; the store, the inventory reader and patch
messages all use it."""

from __future__ import annotations

import pytest

from orchestrator.secrets import is_secret_key, redact, redact_text, redact_url, safe_url


@pytest.mark.parametrize(
    ("key", "secret"),
    [
        ("db_password", True),
        ("ansible_ssh_pass", True),
        ("GITHUB_TOKEN", True),
        ("vault_x", True),
        ("ssh_private_key", True),
        ("apiKey", True),
        ("api-key", True),
        ("tls_key", True),
        ("Authorization", True),
        ("client_secret", True),
        ("passenger_count", False),
        ("keep", False),
        ("keyboard", False),
        ("tls_cert", False),
        ("app_port", False),
        ("ansible_host", False),
    ],
)
def test_is_secret_key(key: str, secret: bool) -> None:
    assert is_secret_key(key) is secret


def test_redact_replaces_secret_values_recursively() -> None:
    data = {
        "Password": "p",
        "ansible_become_passwd": "p",
        "hosts": [{"api_key": "k", "name": "g1"}, ("x", {"Private_Key": "k"})],
        "nested": {"VAULT_ID": "v", "deep": {"github_token": "t", "client_secret": "s"}},
        "version": "3.0.15",
    }
    assert redact(data) == {
        "Password": "***",
        "ansible_become_passwd": "***",
        "hosts": [{"api_key": "***", "name": "g1"}, ["x", {"Private_Key": "***"}]],
        "nested": {"VAULT_ID": "***", "deep": {"github_token": "***", "client_secret": "***"}},
        "version": "3.0.15",
    }
    assert data["Password"] == "p"  # the input is not changed


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("ansible_ssh_pass=hunter2 ok", "ansible_ssh_pass=<redacted> ok"),
        ('db_password: "two words"', "db_password: <redacted>"),
        ("password hunter2", "password <redacted>"),
        ("vault_token=abc", "vault_token=<redacted>"),
        ("key: AKIA123", "key: <redacted>"),
        ("Authorization: Bearer abc.def", "Authorization: Bearer <redacted>"),
        ("proxy-authorization=xyz", "proxy-authorization=<redacted>"),
        ("GET https://u:p@h/x?token=abc&n=1 failed",
         "GET https://<redacted>@h/x?token=<redacted>&n=<redacted> failed"),
        ("-----BEGIN OPENSSH PRIVATE KEY-----\nAAAA\n-----END OPENSSH PRIVATE KEY-----",
         "<redacted private key>"),
        ("sha " + "a1" * 25, "sha <redacted>"),
        # ordinary sentences stay readable
        ("private key file not found", "private key file not found"),
        ("tests pass fine; ssh key verification failed",
         "tests pass fine; ssh key verification failed"),
        ("Permission denied (publickey,password).", "Permission denied (publickey,password)."),
    ],
)
def test_free_text(text: str, expected: str) -> None:
    assert redact_text(text) == expected


def test_known_secret_values_are_removed_wherever_they_stand() -> None:
    text = "connect as deploy with s3cr3t-value failed (s3cr3t-value)"
    assert redact_text(text, known=["s3cr3t-value", "ab"]) == (
        "connect as deploy with <redacted> failed (<redacted>)"
    )


def test_urls() -> None:
    url = "https://user:pw@hooks.example:8443/T0/B1?token=abc&channel=ops"
    assert redact_url(url) == "https://***@hooks.example:8443/T0/B1?token=***&channel=***"
    assert safe_url(url) == "https://hooks.example:8443/…"
