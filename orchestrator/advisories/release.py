"""The signed `Release` of an apt repository: what makes its indexes, and so its `.deb`s,
trustworthy over plain http (apt's own chain).

`InRelease` (the clearsigned Release), or `Release` + `Release.gpg`, is verified with
`gpgv` against the repository's keyring (Debian's: debian-archive-keyring), in an empty
GnuPG home so no other key counts; only the text the signature covers is read. It lists
the SHA256 and size of every index: a `Packages*` file that differs is refused. An expired
`Valid-Until` is refused (a replayed old Release would hide newer fixes). A repository
configured `trusted: true` is read without any of this, and a note says so.
"""

from __future__ import annotations

import hashlib
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from pathlib import Path
from typing import TYPE_CHECKING

from orchestrator.errors import BadInput

if TYPE_CHECKING:
    from orchestrator.advisories.fetch import Fetched, FetchPolicy
    from orchestrator.advisories.repository import RepoSpec

DEBIAN_KEYRING = "/usr/share/keyrings/debian-archive-keyring.gpg"
_BAD_STATUS = ("BADSIG", "ERRSIG", "EXPKEYSIG", "REVKEYSIG", "NO_PUBKEY", "EXPSIG")
MAX_RELEASE_BYTES = 16 * 1024 * 1024


def refused(repo: RepoSpec, problem: str, fix: str | None = None) -> BadInput:
    """The one error of a repository that cannot be trusted: names it and what failed."""
    return BadInput(
        f"apt repository {repo}: {problem}; nothing was read from it",
        hint=fix or "check the repository (a mirror that rewrites indexes, or a man in the "
        "middle, fails here), and its keyring in advisories.repositories",
    )


@dataclass(frozen=True)
class Release:
    """The verified Release: index path (relative to its directory) -> (sha256, size)."""

    where: str
    files: dict[str, tuple[str, int]]

    def check(self, repo: RepoSpec, name: str, got: Fetched) -> None:
        """`got` (the index `name`, as downloaded) is the file the signed Release lists."""
        listed = self.files.get(name)
        if listed is None:
            raise refused(repo, f"{name} is not listed in the signed {self.where}")
        sha, size = listed
        actual_size = got.path.stat().st_size
        if actual_size != size:
            raise refused(repo, f"{name}: {actual_size} bytes, the signed {self.where} says "
                          f"{size} (the index was changed after it was signed)")
        digest = hashlib.sha256()
        with open(got.path, "rb") as f:
            while chunk := f.read(1 << 20):
                digest.update(chunk)
        if digest.hexdigest() != sha:
            raise refused(repo, f"{name}: SHA256 differs from the signed {self.where} "
                          "(the index was changed after it was signed)")


def read_release(repo: RepoSpec, directory: str, policy: FetchPolicy) -> Release | None:
    """The verified Release at `directory` (None: the repository is `trusted: true`)."""
    from orchestrator.advisories.fetch import FeedMissing, fetch

    if repo.trusted:
        return None
    keyring = repo.keyring or DEBIAN_KEYRING
    try:
        got = fetch(f"{directory}/InRelease", policy)
        text = _verify(repo, keyring, got.path, None, "InRelease")
        where = "InRelease"
    except FeedMissing:
        try:
            release = fetch(f"{directory}/Release", policy)
            signature = fetch(f"{directory}/Release.gpg", policy)
        except FeedMissing:
            raise refused(
                repo, "unsigned: neither InRelease nor Release + Release.gpg is there",
                "sign the repository (apt refuses it too), or set `trusted: true` on it in "
                "advisories.repositories to read it without authentication",
            ) from None
        text = _verify(repo, keyring, release.path, signature.path, "Release.gpg")
        where = "Release"
    return Release(where, _parse(repo, text, where))


def _verify(repo: RepoSpec, keyring: str, data: Path, signature: Path | None, what: str) -> str:
    """The signed text, verified by gpgv with `keyring` only; `refused` otherwise."""
    if not Path(keyring).is_file():
        raise refused(repo, f"keyring {keyring} does not exist",
                      "install debian-archive-keyring, or give the repository's `keyring:` "
                      "(an absolute path) in advisories.repositories")
    if data.stat().st_size > MAX_RELEASE_BYTES:
        raise refused(repo, f"{what}: larger than {MAX_RELEASE_BYTES >> 20} MB")
    gpgv = shutil.which("gpgv")
    if gpgv is None:
        raise BadInput("gpgv is not installed: apt repositories cannot be verified",
                       hint="apt-get install gpgv (bootstrap.sh installs it)")
    with tempfile.TemporaryDirectory(prefix="bluegreen-gpgv-") as home:
        out = Path(home) / "signed"
        argv = [gpgv, "--homedir", home, "--status-fd", "1", "--keyring", keyring]
        argv += [str(signature), str(data)] if signature else ["--output", str(out), str(data)]
        try:
            proc = subprocess.run(argv, capture_output=True, text=True, timeout=60, check=False,
                                  env={"PATH": "/usr/bin:/bin", "LANG": "C"})
        except subprocess.TimeoutExpired:
            raise refused(repo, f"{what}: gpgv did not answer within 60 s") from None
        status = [line.split()[1] for line in proc.stdout.splitlines()
                  if line.startswith("[GNUPG:] ") and len(line.split()) > 1]
        # apt's rule: a Release is often signed by several keys (the archive's current and
        # next ones); one good signature by a key of the keyring suffices, the others may
        # be of keys it does not have (NO_PUBKEY, and so a non-zero exit); a BADSIG never
        if "BADSIG" in status or "GOODSIG" not in status:
            reason = ", ".join(sorted({x for x in status if x in _BAD_STATUS})) or (
                proc.stderr.strip().splitlines() or ["no good signature"])[-1]
            raise refused(repo, f"{what}: bad signature, or not by a key of {keyring} "
                          f"(gpgv: {reason[:200]})")
        raw = (out if signature is None else data).read_bytes()
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        raise refused(repo, f"{what}: the signed Release is not UTF-8 text") from None


def _parse(repo: RepoSpec, text: str, where: str) -> dict[str, tuple[str, int]]:
    files: dict[str, tuple[str, int]] = {}
    section = ""
    names: dict[str, str] = {}
    """Suite: and Codename: of the signed Release."""
    for line in text.splitlines():
        if line.startswith((" ", "\t")):
            if section == "sha256":
                parts = line.split()
                if len(parts) != 3 or len(parts[0]) != 64 or not parts[1].isdigit():
                    raise refused(repo, f"{where}: malformed SHA256 line {line.strip()[:80]!r}")
                files[parts[2]] = (parts[0].lower(), int(parts[1]))
            continue
        key, _, value = line.partition(":")
        section = key.strip().lower()
        if section == "valid-until":
            _check_valid_until(repo, value.strip(), where)
        if section in ("suite", "codename"):
            names[section] = value.strip()
    if repo.suite not in ("./", ".") and repo.suite.rstrip("/") not in names.values():
        # a correctly signed Release of ANOTHER suite of the same archive (e.g. bookworm
        # served as bookworm-security) would hide every security fix: apt's "conflicting
        # distribution", refused here
        said = ", ".join(f"{k.capitalize()}: {v}" for k, v in sorted(names.items())) or "none"
        raise refused(repo, f"{where}: signed for another suite ({said}), not {repo.suite}",
                      "a mirror serving the wrong suite, or a replay: check the mirror")
    if not files:
        raise refused(repo, f"{where}: lists no SHA256 of any index")
    return files


def _check_valid_until(repo: RepoSpec, value: str, where: str) -> None:
    try:
        until = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        raise refused(repo, f"{where}: Valid-Until {value[:60]!r} is not a date") from None
    if until.tzinfo is None:
        until = until.replace(tzinfo=UTC)
    if until < datetime.now(UTC):
        raise refused(repo, f"{where}: expired (Valid-Until {value}): an old Release replayed, "
                      "or a mirror that stopped syncing", "update the mirror")
