"""trainctl: launch, watch, checkpoint and stop training runs from one terminal UI."""

__version__ = "0.1.0"
