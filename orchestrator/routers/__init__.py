"""Traffic switch drivers behind one small contract (`base.Router`, `base.RouterSettings`):
one folder per driver, found by kind through `registry` (built-in table, entry points)."""
