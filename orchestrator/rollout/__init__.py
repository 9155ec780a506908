"""One service's rollout: runner (the state machine: skip ended steps, journal, run, emit),
context (what a run's steps share), records (what each step found, typed; the journal's
format), recovery (where a resumed run finds traffic), tools (Ansible, probes, SSH, HTTP:
what tests replace), plan (`bluegreen plan`: what a rollout would do), steps/ (precheck,
patch, verify, flip, bake: small objects with run/resume)."""
