"""Advisory lock keys: a namespaced hash, never a fixed number, so bluegreen's locks do not
collide with another application's on the same server (terraform's pg backend took one
fixed key and blocked unrelated users)."""

from __future__ import annotations

import hashlib

NAMESPACE = "bluegreen"


def lock_key(kind: str, service: str) -> int:
    """The signed 64-bit key of the `kind` lock ("run", "traffic", "migrate") of `service`."""
    digest = hashlib.sha256(f"{NAMESPACE}:{kind}:{service}".encode()).digest()
    return int.from_bytes(digest[:8], "big", signed=True)
