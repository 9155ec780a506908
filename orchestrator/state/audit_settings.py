"""The `audit:` settings of bluegreen.yml, as plain data (stdlib only: the incident path
reads them from the validated-config snapshot, without pydantic).

```yaml
audit:
  key_file: /etc/bluegreen/audit.key   # default: audit.key beside the state database
  witness:
    syslog: tcp://logs.example.org:6514  # `local` (default: /dev/log), `off`, tcp://HOST:PORT
    syslog_copy: /var/log/remote/bluegreen.log  # the collector's file, if readable here
    file: /srv/witness/bluegreen-heads.log     # append-only file (another filesystem)
    timeout_seconds: 1.0
```
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class WitnessSettings:
    """Where heads go. `syslog`: "local" (the local socket), "off", or "tcp://HOST:PORT"."""

    syslog: str = "local"
    syslog_copy: Path | None = None
    file: Path | None = None
    timeout_s: float = 1.0

    @property
    def configured(self) -> list[str]:
        names = [] if self.syslog == "off" else [f"syslog {self.syslog}"]
        return names + ([f"file {self.file}"] if self.file else [])


@dataclass(frozen=True)
class AuditSettings:
    """The audit key's file and the witnesses, paths resolved."""

    key_file: Path
    witness: WitnessSettings = field(default_factory=WitnessSettings)

    def as_dict(self) -> dict[str, Any]:
        w = self.witness
        return {
            "key_file": str(self.key_file),
            "witness": {
                "syslog": w.syslog,
                "syslog_copy": None if w.syslog_copy is None else str(w.syslog_copy),
                "file": None if w.file is None else str(w.file),
                "timeout_s": w.timeout_s,
            },
        }

    @classmethod
    def from_dict(cls, doc: dict[str, Any]) -> AuditSettings:
        """Inverse of `as_dict` (KeyError/TypeError/ValueError for a damaged document)."""
        w = doc["witness"]
        copy, file = w["syslog_copy"], w["file"]
        return cls(
            key_file=Path(str(doc["key_file"])),
            witness=WitnessSettings(
                syslog=str(w["syslog"]),
                syslog_copy=None if copy is None else Path(str(copy)),
                file=None if file is None else Path(str(file)),
                timeout_s=float(w["timeout_s"]),
            ),
        )
