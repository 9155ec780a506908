"""The local lab: real Debian hosts (systemd-nspawn + sshd) on this machine.

Blue and green pools per service, a lab apt repository with demo packages, and HAProxy in
front. Used by the demo and by every integration test. Needs root. Entry point: `Lab`.
"""
