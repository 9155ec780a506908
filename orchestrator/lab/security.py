"""The lab's `bookworm-security` suite: the real security updates pending for the base image.

Once per base image, apt on THIS machine (which reaches deb.debian.org; the lab hosts do
not) reads Debian's security suite against the image's own package database, simulates the
upgrade to learn which packages have a newer candidate there (and any new package those
need), and downloads exactly those `.deb` files into the cache, next to a `pending.json`
that records each package's installed and candidate version. `lab up` publishes them as
the `bookworm-security` suite of the lab repository; the hosts list it as their security
source. The content is fixed once fetched (reproducible labs): remove the
`security-*` folder of the cache to fetch what Debian offers today.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import shutil
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

from orchestrator.errors import LabError
from orchestrator.lab.paths import LabPaths
from orchestrator.lab.proc import run

SUITE = "bookworm-security"
MIRROR = "http://deb.debian.org/debian-security"
KEYRING = Path("/usr/share/keyrings/debian-archive-keyring.gpg")
FORMAT = "v1"

Progress = Callable[[str], None]


@dataclass(frozen=True)
class PendingUpdate:
    name: str
    installed: str | None  # None: a new package the upgrades need
    candidate: str
    filename: str


def security_key(base: Path) -> str:
    return hashlib.sha256(f"{FORMAT} {base.name} {MIRROR} {SUITE}".encode()).hexdigest()[:12]


def ensure_security_debs(paths: LabPaths, base: Path, say: Progress) -> Path:
    """The cached folder of .debs (and pending.json) for `base`; fetched once with apt."""
    target = paths.cache / f"security-{security_key(base)}"
    if (target / ".complete").exists():
        return target
    paths.cache.mkdir(parents=True, exist_ok=True)
    with open(paths.cache / "security.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # another lab may be fetching the same suite
        if (target / ".complete").exists():
            return target
        say(f"fetching the security updates pending for the lab image from {MIRROR} (once)")
        tmp = target.with_name(target.name + ".tmp")
        shutil.rmtree(tmp, ignore_errors=True)
        updates = _fetch(base, tmp)
        (tmp / "pending.json").write_text(
            json.dumps([asdict(u) for u in updates], indent=2) + "\n"
        )
        shutil.rmtree(tmp / "apt", ignore_errors=True)
        (tmp / ".complete").write_text(versions_key(updates) + "\n")
        shutil.rmtree(target, ignore_errors=True)
        tmp.rename(target)
    return target


def pending(folder: Path) -> list[PendingUpdate]:
    return [PendingUpdate(**u) for u in json.loads((folder / "pending.json").read_text())]


def versions_key(updates: list[PendingUpdate]) -> str:
    text = "\n".join(f"{u.name} {u.installed} {u.candidate}" for u in updates)
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def _fetch(base: Path, tmp: Path) -> list[PendingUpdate]:
    if not KEYRING.exists():
        raise LabError(
            f"{KEYRING} is missing: cannot check Debian's security suite",
            hint="apt-get install debian-archive-keyring",
        )
    apt = tmp / "apt"
    for d in ("lists/partial", "cache/archives/partial", "etc/sources.list.d",
              "etc/preferences.d"):
        (apt / d).mkdir(parents=True)
    (apt / "etc/sources.list").write_text(f"deb [signed-by={KEYRING}] {MIRROR} {SUITE} main\n")
    arch = run(["dpkg", "--print-architecture"]).stdout.strip()
    options = [
        f"-oDir::Etc::sourcelist={apt / 'etc/sources.list'}",
        f"-oDir::Etc::sourceparts={apt / 'etc/sources.list.d'}",
        f"-oDir::Etc::preferencesparts={apt / 'etc/preferences.d'}",
        f"-oDir::State::Lists={apt / 'lists'}",
        f"-oDir::Cache={apt / 'cache'}",
        f"-oDir::State::status={base / 'var/lib/dpkg/status'}",
        f"-oAPT::Architecture={arch}",
        "-oAPT::Sandbox::User=root",
        "-oDebug::NoLocking=1",
        "-q",
    ]
    hint = f"check that this machine reaches {MIRROR} (apt-get update works)"
    update = run(["apt-get", *options, "update"], check=False, timeout=600)
    if update.returncode != 0 or "Err:" in update.stdout:
        tail = " / ".join((update.stdout + update.stderr).strip().splitlines()[-3:])
        raise LabError(f"apt-get update of {SUITE} failed: {tail}", hint=hint)
    simulated = run(["apt-get", *options, "-s", "dist-upgrade"], timeout=300).stdout
    updates = parse_simulation(simulated)
    debs = tmp / "debs"
    debs.mkdir()
    if updates:
        specs = [f"{u.name}={u.candidate}" for u in updates]
        got = run(["apt-get", *options, "download", *specs], check=False, cwd=debs, timeout=900)
        if got.returncode != 0:
            tail = " / ".join((got.stdout + got.stderr).strip().splitlines()[-3:])
            raise LabError(f"downloading the {SUITE} packages failed: {tail}", hint=hint)
    files = {p.name.split("_")[0]: p.name for p in debs.glob("*.deb")}
    missing = [u.name for u in updates if u.name not in files]
    if missing:
        raise LabError(f"apt-get download did not fetch: {', '.join(missing)}", hint=hint)
    return [
        PendingUpdate(u.name, u.installed, u.candidate, files[u.name]) for u in updates
    ]


def parse_simulation(text: str) -> list[PendingUpdate]:
    """`Inst NAME [OLD] (NEW ORIGIN [ARCH])` lines of `apt-get -s dist-upgrade`."""
    found: list[PendingUpdate] = []
    for line in text.splitlines():
        parts = line.split()
        if len(parts) < 3 or parts[0] != "Inst":
            continue
        name = parts[1]
        if parts[2].startswith("["):
            installed: str | None = parts[2].strip("[]")
            candidate = parts[3].lstrip("(")
        else:
            installed, candidate = None, parts[2].lstrip("(")
        found.append(PendingUpdate(name, installed, candidate, ""))
    return sorted(found, key=lambda u: u.name)
