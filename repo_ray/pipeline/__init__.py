"""The driver of a run and all of its Ray wiring: cluster setup, actor placement, metrics."""
