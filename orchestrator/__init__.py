"""bluegreen: blue-green patch rollouts. Patch the standby, verify it, flip, bake, roll back."""

__version__ = "0.1.0"
