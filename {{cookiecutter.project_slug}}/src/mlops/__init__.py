"""mlops: the machinery behind this project's pipeline (one module per concern, one CLI over them)."""

__version__ = "0.3.0"
