"""The rollout's steps that stand on their own (the verify step is also `bluegreen verify`)."""
