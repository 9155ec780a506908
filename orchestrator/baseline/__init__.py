"""Approved baselines and the watch that checks the live side against them.

Import-free. `approved` (the baseline file: save, read, compare a fingerprint with it),
`watch` (`bluegreen watch`, `baseline check`: a round, deviations reported as audit
records, webhooks and exit codes, quarantine on the kinds a service names).
"""
