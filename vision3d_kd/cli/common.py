"""Helpers shared by CLI verbs: device choice and held-out split lookup."""

from __future__ import annotations

from pathlib import Path

import torch

from ..errors import ConfigError

__all__ = ["pick_device", "held_out_split"]


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


def held_out_split(data: Path) -> str | None:
    """Name of the held-out split of a dataset folder: 'test', else 'val', else None (no evaluation)."""
    data = Path(data)
    if (data / "transforms.json").is_file() and not (data / "transforms_train.json").is_file():
        return "test"  # nerfstudio layout: the loader holds out every 8th frame
    for split in ("test", "val"):
        if (data / f"transforms_{split}.json").is_file():
            return split
    return None
