"""Traffic switch drivers behind one small contract (`base.Router`)."""
