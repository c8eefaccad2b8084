"""The package version, read by the build (pyproject) and by `vstore --version`."""

__version__ = "0.2.0"
