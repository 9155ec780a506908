"""The lab repository's own signing key: the lab signs what it serves (InRelease, Release +
Release.gpg), and both readers verify it the way they would a real mirror: `advisories`
with the keyring in the lab's bluegreen.yml, the hosts' apt through `signed-by`.

The key is made once per lab (`gpg --batch --quick-gen-key`, ed25519, no passphrase) in a
GnuPG home inside the lab's root; gpg's agent is stopped after every use, so the lab leaves
no process behind.
"""

from __future__ import annotations

from pathlib import Path

from orchestrator.lab.paths import REPO_HOSTNAME, REPO_PORT, LabPaths
from orchestrator.lab.proc import run

HOST_KEYRING = "/etc/apt/keyrings/bluegreen-lab.gpg"
SUITES = ("stable", "unsafe", "bookworm-security")
_UID = "bluegreen lab repository <lab@bluegreen.invalid>"


def _gpg(paths: LabPaths, *args: str) -> None:
    run(["gpg", "--homedir", str(paths.repo_gnupg), "--batch", "--yes", "--quiet",
         "--passphrase", "", "--pinentry-mode", "loopback", *args])


def ensure_key(paths: LabPaths) -> Path:
    """The lab's public keyring (made with its key the first time)."""
    if paths.repo_keyring.is_file() and (paths.repo_gnupg / "private-keys-v1.d").is_dir():
        return paths.repo_keyring
    paths.repo_gnupg.mkdir(mode=0o700, parents=True, exist_ok=True)
    try:
        _gpg(paths, "--quick-gen-key", _UID, "ed25519", "sign", "never")
        _gpg(paths, "--export", "-o", str(paths.repo_keyring))
    finally:
        stop_agent(paths)
    paths.repo_keyring.chmod(0o644)
    return paths.repo_keyring


def sign_suites(paths: LabPaths, folders: list[Path]) -> None:
    """InRelease (clearsigned) and Release.gpg (detached) for each suite's Release."""
    ensure_key(paths)
    try:
        for folder in folders:
            release = folder / "Release"
            _gpg(paths, "--clearsign", "-o", str(folder / "InRelease"), str(release))
            _gpg(paths, "--detach-sign", "-o", str(folder / "Release.gpg"), str(release))
    finally:
        stop_agent(paths)


def stop_agent(paths: LabPaths) -> None:
    run(["gpgconf", "--homedir", str(paths.repo_gnupg), "--kill", "gpg-agent"], check=False)


def host_sources() -> str:
    """The hosts' apt sources: the lab repository, verified with the lab's key."""
    return "".join(
        f"deb [signed-by={HOST_KEYRING}] http://{REPO_HOSTNAME}:{REPO_PORT}/{suite} ./\n"
        for suite in SUITES
    )


def trust_on_host(paths: LabPaths, root: Path) -> None:
    """Write the lab's keyring and signed-by sources into a host's root (its own layer:
    the shared image keeps `[trusted=yes]`, which this file replaces)."""
    keyrings = root / HOST_KEYRING.lstrip("/")
    keyrings.parent.mkdir(parents=True, exist_ok=True)
    keyrings.write_bytes(paths.repo_keyring.read_bytes())
    keyrings.chmod(0o644)
    (root / "etc/apt/sources.list.d/bluegreen-lab.list").write_text(host_sources())
