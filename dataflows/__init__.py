"""Dataflows: wiring only. Run one with `python -m bytewax.run dataflows.<name>`."""
