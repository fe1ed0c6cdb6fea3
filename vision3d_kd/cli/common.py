"""Helpers shared by CLI verbs: device choice."""

from __future__ import annotations

import torch

from ..errors import ConfigError

__all__ = ["pick_device"]


def pick_device(name: str) -> torch.device:
    """'auto' -> cuda when available else cpu; otherwise the named device (ConfigError if unusable)."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(f"--device {name}: CUDA is not available on this machine")
    try:
        return torch.device(name)
    except RuntimeError:
        raise ConfigError(f"--device {name}: not a device name (use auto, cpu or cuda)") from None

