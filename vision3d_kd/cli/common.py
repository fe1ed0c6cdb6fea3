"""Helpers shared by CLI verbs: device choice, a progress bar per named stage."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator

import torch

from ..errors import ConfigError

__all__ = ["pick_device", "stage_bars"]


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



@contextlib.contextmanager
def stage_bars(enabled: bool = True) -> Iterator[Callable[[str, int, int], None]]:
    """A transient rich display with one bar per stage; yields `progress(stage, i, n)`."""
    from rich.progress import Progress

    with Progress(transient=True, disable=not enabled) as bar:
        tasks: dict[str, int] = {}

        def progress(stage: str, i: int, n: int) -> None:
            if stage not in tasks:
                tasks[stage] = bar.add_task(stage, total=n)
            bar.update(tasks[stage], completed=i, total=n)

        yield progress
