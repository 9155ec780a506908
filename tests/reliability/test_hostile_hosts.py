"""Issue 21 items 5-7 on the lab: one compromised fleet host (root on web-blue-1) against the
operator's terminal, the process's memory and a campaign's package list.

Root on web-blue-1 puts a `dpkg-query` first in PATH that adds two lines to the real
answer: `inetutils-telnetd` "built from openssl", and a package whose name carries an
erase-line (ESC[2K), an OSC 52 clipboard write and an OSC 0 title. web gets two checks: one
whose evidence carries the same sequences, one that answers 512 MiB. Then, on a terminal (a
pty: nothing strips escapes for us):
1. `verify web --side blue`: exit 3; no escape sequence but the CLI's own colours, no BEL;
   the sequences shown as `\\x1b[2K`, `\\x1b]52;`, `\\x1b]0;`; the huge check is an error
   "output too large (> 8 MB)", never a pass.
2. `exposure web`: the hostile package name shown visibly, nothing raw.
3. `campaign new`: inetutils-telnetd and the hostile name are not in any advisory's
   `packages`; the header names them (`# not pinned: ...`, one visible line each).
The state is a store of this test's own; the fake dpkg-query is removed at the end.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from orchestrator.lab.lab import Lab
from tests.reliability.helpers import FIGURES
from tests.support.cli import bluegreen, bluegreen_on_tty
from tests.support.lab import hosts_of

pytestmark = pytest.mark.lab

SEQUENCES = r"\033[2K\033[1A\r\033[32m  ok\033]52;c;cm0gLXJmIH4=\007\033]0;owned\007"
# in a package name: the same but the CR (dpkg's answer is split into lines at any CR)
IN_A_NAME = SEQUENCES.replace(r"\r", "")
FAKE_DPKG_QUERY = f"""#!/bin/sh
# issue 21 test: a compromised host lies about its packages
/usr/bin/dpkg-query "$@" || exit $?
case "$*" in
  *source:Package*)
    v=$(/usr/bin/dpkg-query -W -f '${{Version}}' openssl)
    printf 'ii \\tinetutils-telnetd\\t2:2.4-2\\topenssl\\t%s\\n' "$v"
    printf 'ii \\tevil{IN_A_NAME}\\t1.0-1\\topenssl\\t%s\\n' "$v" ;;
esac
"""
FAKE = "/usr/local/bin/dpkg-query"
# what the CLI may write itself on a terminal: colours (click.style, rich)
OWN_COLOURS = re.compile(r"\x1b\[[0-9;]*m")


def _raw_controls(out: str) -> list[str]:
    """Escape/bell characters left once the CLI's own colours are taken out (a pty turns
    "\\n" into "\\r\\n": those CRs are the terminal's, not the host's)."""
    rest = OWN_COLOURS.sub("", out).replace("\r\n", "\n")
    return [ch for ch in rest if ch in "\x1b\x07\x9b\r"]


def _config(lab: Lab, tmp: Path) -> Path:
    doc = yaml.safe_load(lab.paths.config.read_text())
    key = tmp / "audit.key"  # made by the first command
    doc["state"] = {"path": str(tmp / "state" / "state.db")}
    doc["audit"] = {"key_file": str(key),
                    "witness": {"syslog": "off", "file": str(tmp / "witness.log")}}
    doc["reports_dir"] = str(tmp / "reports")
    doc["services"]["web"]["checks"] = [
        {"kind": "command", "id": "hostile-evidence",
         "argv": ["sh", "-c", f"printf 'FAIL{SEQUENCES}'; exit 1"]},
        {"kind": "command", "id": "huge-answer", "argv": ["head", "-c", "536870912",
                                                          "/dev/zero"]},
    ]
    path = tmp / "bluegreen.yml"
    path.write_text(yaml.safe_dump(doc))
    return path


def test_a_compromised_host_reaches_no_terminal_memory_or_campaign(
    fresh_lab: Lab, tmp_path: Path
) -> None:
    """(fresh_lab: web's four hosts have the image's openssl, so its CVEs are open)"""
    lab = fresh_lab
    FIGURES["hostile_hosts_tried"] = 3
    config = _config(lab, tmp_path)
    liar = hosts_of(lab, "web", "blue")[0]
    adopt = bluegreen(config, "status", "web", "--adopt", "--reason", "issue 21 hostile host")
    assert adopt.returncode == 0, adopt.stderr
    _plant(lab, liar)
    try:
        # 1. verify: the FAIL lines stay, the sequences are shown, 512 MiB is an error
        rc, out = bluegreen_on_tty(config, "verify", "web", "--side", "blue", timeout=600)
        assert rc == 3, out
        assert not _raw_controls(out) and "\x1b[32m  ok" not in out, repr(out)
        assert "\\x1b[2K\\x1b[1A\\r\\x1b[32m  ok\\x1b]52;c;cm0gLXJmIH4=\\x07\\x1b]0;owned\\x07" in out
        for host in hosts_of(lab, "web", "blue"):  # the table: each host's row, then the error
            row = out[out.index(f"  {host}  "):]
            assert "huge-answer\r\n           output too large (> 8 MB)" in row, out
        assert "huge-answer" in out and "\x1b[31merror" in out, out
        FIGURES["hostile_hosts"].append(("verify: escapes shown, 512 MiB answer refused", True))

        # 2. exposure: the package name a host made up is shown, not obeyed
        rc, out = bluegreen_on_tty(config, "exposure", "web", "--side", "blue", timeout=900)
        assert rc == 3, out
        assert not _raw_controls(out) and "\x1b[32m  ok" not in out, repr(out)
        assert "evil\\x1b[2K\\x1b[1A\\x1b[32m  ok\\x1b]52;" in out, out
        FIGURES["hostile_hosts"].append(("exposure: a made-up package name shown", True))

        # 3. campaign new: one host cannot widen the campaign
        made = tmp_path / "campaign.yml"
        new = bluegreen(config, "campaign", "new", "--services", "web", "-o", str(made),
                        timeout=900)
        assert new.returncode == 0, new.stderr
        text = made.read_text()
        doc = yaml.safe_load(text)
        pinned = {p for a in doc["advisories"] for p in a["packages"]}
        assert {"libssl3", "openssl"} <= pinned, pinned
        assert not [p for p in pinned if p.startswith(("inetutils", "evil"))], pinned
        notes = [line for line in text.splitlines() if line.startswith("# not pinned: ")]
        telnetd = [line for line in notes if line.startswith("# not pinned: inetutils-telnetd: ")]
        assert len(telnetd) == 1 and "1 of 4 host(s) with openssl open" in telnetd[0], notes
        assert liar in telnetd[0] and "the repositories' index does not list it" in telnetd[0]
        assert any(line.startswith("# not pinned: evil\\x1b[2K") for line in notes), notes
        assert "\x1b" not in text and "\x07" not in text
        FIGURES["hostile_hosts"].append(("campaign new: one host's package not pinned", True))
    finally:
        lab.exec(liar, ["rm", "-f", FAKE], check=True)


def _plant(lab: Lab, host: str) -> None:
    """Root on `host`: a dpkg-query first in PATH (sshd's default PATH has /usr/local/bin
    first), written through the host's own shell."""
    script = FAKE_DPKG_QUERY.replace("'", "'\\''")
    lab.exec(host, ["sh", "-c", f"printf '%s' '{script}' > {FAKE} && chmod 755 {FAKE}"],
             check=True)
    answer = lab.exec(host, ["sh", "-c", "PATH=/usr/local/bin:/usr/bin:/bin; command -v "
                                         "dpkg-query"], check=True)
    assert answer.stdout.strip() == FAKE, answer
