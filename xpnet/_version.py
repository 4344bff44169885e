"""The version of xpnet (one place: the package, io and the CLI read it from here)."""

__version__ = "0.1.0"
