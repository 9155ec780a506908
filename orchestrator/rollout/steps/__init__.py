"""The rollout's steps, one module each (base: their contract). The verify step's module
also holds the gate itself, which `bluegreen verify` and converge use on their own."""
