"""The command driver: `settings` and `router` (the user's own script drives any load
balancer bluegreen ships no driver for)."""
