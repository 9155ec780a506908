"""Demo packages (built with dpkg-deb) and the lab's apt repository (flat suites, signed
with the lab's own key: `repokey`).

`stable` holds what a plain upgrade may pick: demo-openssl 3.0.11-1 (vulnerable) and
3.0.15-1 (fixed), demo-web 1.0.0 and 1.0.1 (the fix). `unsafe` holds demo-web 1.1.0 (broken:
/health fails), 1.1.1 (subtle: /health passes, real traffic fails after a while), 1.1.2
(flaky: /health passes, 1 in 33 requests on / fails, about 3 %: under the bake's old 5 %
limit) and 1.1.3 (slow: +300 ms on every request on /, no errors); hosts pin it at priority
1, so only an explicit `demo-web=1.1.x` installs one.
"""

from __future__ import annotations

import gzip
import hashlib
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib import resources
from pathlib import Path

from orchestrator.lab.paths import LabPaths
from orchestrator.lab.proc import run

VULNERABLE_OPENSSL = "3.0.11-1"
FIXED_OPENSSL = "3.0.15-1"
ADVISORY = "DEMO-2026-0001"
CVE = "CVE-2026-0001"


@dataclass(frozen=True)
class DemoPackage:
    name: str
    version: str
    suite: str  # stable | unsafe
    behaviour: str = "ok"

    @property
    def filename(self) -> str:
        return f"{self.name}_{self.version}_all.deb"


PACKAGES = [
    DemoPackage("demo-openssl", VULNERABLE_OPENSSL, "stable"),
    DemoPackage("demo-openssl", FIXED_OPENSSL, "stable"),
    DemoPackage("demo-web", "1.0.0", "stable"),
    DemoPackage("demo-web", "1.0.1", "stable"),
    DemoPackage("demo-web", "1.1.0", "unsafe", "broken"),
    DemoPackage("demo-web", "1.1.1", "unsafe", "subtle"),
    DemoPackage("demo-web", "1.1.2", "unsafe", "flaky"),
    DemoPackage("demo-web", "1.1.3", "unsafe", "slow"),
]
INITIAL = [("demo-openssl", VULNERABLE_OPENSSL), ("demo-web", "1.0.0")]
RECIPE_VERSION = "v4"


def _asset(name: str) -> str:
    return resources.files("orchestrator.lab").joinpath("assets", name).read_text()


def debs_key() -> str:
    h = hashlib.sha256(RECIPE_VERSION.encode())
    for name in ("demo_web_server.py", "demo-web.service"):
        h.update(_asset(name).encode())
    h.update(repr(PACKAGES).encode())
    return h.hexdigest()[:12]


def _changelog(pkg: DemoPackage) -> str:
    if pkg.name == "demo-openssl" and pkg.version == FIXED_OPENSSL:
        body = f"  * Security fix: {CVE} (heap overflow in the demo handshake). {ADVISORY}.\n"
    elif pkg.name == "demo-openssl":
        body = f"  * Release {pkg.version}. Vulnerable to {CVE}, fixed in {FIXED_OPENSSL}.\n"
    else:
        body = f"  * demo-web {pkg.version} ({pkg.behaviour}).\n"
    return (
        f"{pkg.name} ({pkg.version}) bookworm; urgency=high\n\n{body}\n"
        f" -- bluegreen lab <lab@bluegreen.invalid>  Fri, 27 Nov 2026 00:00:00 +0000\n"
    )


def _build_one(pkg: DemoPackage, out: Path) -> Path:
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        (root / "DEBIAN").mkdir()
        doc = root / "usr/share/doc" / pkg.name
        doc.mkdir(parents=True)
        # where and how Debian ships it (policy 12.7): what `exposure` reads CVEs from
        (doc / "changelog.Debian.gz").write_bytes(
            gzip.compress(_changelog(pkg).encode(), compresslevel=9, mtime=0)
        )
        control = [
            f"Package: {pkg.name}",
            f"Version: {pkg.version}",
            "Architecture: all",
            "Maintainer: bluegreen lab <lab@bluegreen.invalid>",
            "Section: misc",
            "Priority: optional",
        ]
        if pkg.name == "demo-openssl":
            lib = root / "usr/lib/demo-openssl"
            lib.mkdir(parents=True)
            # a real file of a shared library's shape: mapped by demo-web
            payload = f"demo-openssl {pkg.version}\n".encode().ljust(65536, b"\0")
            (lib / "libdemossl.so.3").write_bytes(payload)
            control.append("Description: demo TLS library for the bluegreen lab")
        else:
            app = root / "usr/lib/demo-web"
            app.mkdir(parents=True)
            server = _asset("demo_web_server.py").replace("@VERSION@", pkg.version)
            (app / "server.py").write_text(server.replace("@BEHAVIOUR@", pkg.behaviour))
            unit = root / "lib/systemd/system"
            unit.mkdir(parents=True)
            (unit / "demo-web.service").write_text(_asset("demo-web.service"))
            control += [
                "Depends: python3, demo-openssl",
                "Description: demo web service for the bluegreen lab",
            ]
            postinst = root / "DEBIAN/postinst"
            postinst.write_text(
                "#!/bin/sh\nset -e\n"
                "systemctl enable demo-web.service >/dev/null 2>&1 || true\n"
                "if [ -d /run/systemd/system ]; then\n"
                "  systemctl daemon-reload\n  systemctl restart demo-web.service\nfi\n"
            )
            postinst.chmod(0o755)
        (root / "DEBIAN/control").write_text("\n".join(control) + "\n")
        target = out / pkg.suite / pkg.filename
        target.parent.mkdir(parents=True, exist_ok=True)
        run(["dpkg-deb", "--root-owner-group", "-Zgzip", "--build", str(root), str(target)])
        return target


def ensure_debs(paths: LabPaths) -> Path:
    """Build (once per recipe) every demo package; return the folder holding stable/ and unsafe/."""
    out = paths.cache / f"debs-{debs_key()}"
    if (out / ".complete").exists():
        return out
    shutil.rmtree(out, ignore_errors=True)
    for pkg in PACKAGES:
        _build_one(pkg, out)
    (out / ".complete").write_text("ok\n")
    return out


def initial_debs(debs: Path) -> list[Path]:
    by_key = {(p.name, p.version): debs / p.suite / p.filename for p in PACKAGES}
    return [by_key[k] for k in INITIAL]


def publish_repo(
    debs: Path, repo: Path, security: Path | None = None,
    sign: Callable[[list[Path]], None] | None = None,
) -> None:
    """Write the served repository: each suite's .debs, Packages(.gz) and a Release file,
    signed by `sign` (`repokey.sign_suites`: InRelease, Release.gpg).

    `security`: the cached real security updates (`lab.security`), served as the
    `bookworm-security` suite."""
    shutil.rmtree(repo, ignore_errors=True)
    suites = {"stable": debs / "stable", "unsafe": debs / "unsafe"}
    if security is not None:
        suites["bookworm-security"] = security / "debs"
    for suite, source in suites.items():
        folder = repo / suite
        folder.mkdir(parents=True)
        for deb in sorted(source.glob("*.deb")):
            _link_or_copy(deb, folder / deb.name)
        packages = run(["dpkg-scanpackages", "--multiversion", ".", "/dev/null"], cwd=folder).stdout
        (folder / "Packages").write_text(packages)
        (folder / "Packages.gz").write_bytes(gzip.compress(packages.encode(), mtime=0))
        label = "security" if suite == "bookworm-security" else suite
        lines = [
            "Origin: bluegreen-lab",
            f"Label: bluegreen-lab-{label}",
            f"Suite: {suite}",
            f"Codename: {suite}",
            f"Date: {datetime.now(UTC).strftime('%a, %d %b %Y %H:%M:%S UTC')}",
            "Architectures: all amd64 arm64",
            "SHA256:",
        ]
        for name in ("Packages", "Packages.gz"):
            data = (folder / name).read_bytes()
            lines.append(f" {hashlib.sha256(data).hexdigest()} {len(data)} {name}")
        (folder / "Release").write_text("\n".join(lines) + "\n")
    if sign is not None:
        sign([repo / suite for suite in suites])


def _link_or_copy(src: Path, dest: Path) -> None:
    """A hard link where the cache and the lab share a filesystem (the security suite is
    ~15 MB: no copy on every `lab up`), else a copy."""
    import os

    try:
        os.link(src, dest)
    except OSError:
        shutil.copy2(src, dest)
