"""User-facing errors: the CLI prints their one-line message (no traceback) and exits 2."""

from __future__ import annotations

__all__ = ["V3KDError", "DataError", "RunError", "ConfigError", "NumericalError"]


class V3KDError(Exception):
    """Base class for errors caused by user input (files, flags, values)."""


class DataError(V3KDError):
    """A dataset, image or scene file is missing, malformed or inconsistent."""


class RunError(V3KDError):
    """A run directory (config.json + weights.safetensors) is missing, unsafe or corrupt."""


class ConfigError(V3KDError):
    """A configuration value or CLI option is invalid or out of range."""


class NumericalError(V3KDError):
    """An optimisation produced non-finite values (NaN/Inf) and stopped before writing them."""
