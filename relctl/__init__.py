"""relctl: the release authority for AI evaluation pipelines."""

__version__ = "0.1.0"
