"""bluegreen: blue-green patch rollouts. Patch the standby, verify it, flip, bake, roll back."""

import os as _os

# pydantic scans every installed distribution's entry points for plugins the first time a
# model validates (~20 ms at start-up). bluegreen uses none; the incident path
# (`bluegreen rollback`) has a start-up budget.
_os.environ.setdefault("PYDANTIC_DISABLE_PLUGINS", "__all__")

__version__ = "0.1.0"
