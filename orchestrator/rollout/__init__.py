"""One service's rollout: runner (the state machine: precheck, patch, verify, flip, bake;
journal and resume), plan (`bluegreen plan`: what a rollout would do), steps/verify (the
verify step: the gate's checks -> the stored result per side)."""
