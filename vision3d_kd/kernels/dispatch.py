"""Which kernel implementation runs: the fused C++ extension or the plain-PyTorch reference.

The fused path is taken when its extension built and every tensor is a float32 CPU tensor;
CUDA tensors, float64 and ``V3KD_NO_EXT=1`` use the reference.
"""

from __future__ import annotations

import pathlib
from types import ModuleType

import torch
from torch import Tensor

from .build import extensions_disabled, load_extension

__all__ = ["KERNELS", "get_extension", "use_fused", "fused_available", "n_threads"]

_CSRC = pathlib.Path(__file__).resolve().parent / "csrc"

# All kernels live in one extension (one translation unit each, built in parallel by ninja);
# bindings.cpp holds the only PYBIND11_MODULE.
KERNELS = ("hash", "grid", "composite")
_SOURCES = ["bindings.cpp", "hash.cpp", "grid.cpp", "composite.cpp"]


def get_extension(kernel: str) -> ModuleType | None:
    """The built extension that holds ``kernel`` (one of :data:`KERNELS`), or ``None``."""
    if kernel not in KERNELS:
        raise KeyError(f"unknown kernel {kernel!r}; expected one of {KERNELS}")
    return load_extension("kernels", [_CSRC / f for f in _SOURCES])


def n_threads(work: int | None = None, grain: int = 1 << 16) -> int:
    """Threads for a fused kernel call: ``torch.get_num_threads()``, but at most one per ``grain``
    items of ``work``. Callers pick ``grain`` as roughly 5-10 ms of single-thread work: on a shared
    machine a parallel region can stall for a scheduler tick (~4 ms) waiting for a thread whose core
    is busy, which only pays off for long calls."""
    nt = max(1, torch.get_num_threads())
    if work is not None:
        nt = min(nt, max(1, work // grain))
    return nt


def use_fused(kernel: str, *tensors: Tensor) -> ModuleType | None:
    """The extension to use for these float tensors, or ``None`` to use the reference."""
    if extensions_disabled():
        return None
    for t in tensors:
        if t.device.type != "cpu" or t.dtype != torch.float32:
            return None
    return get_extension(kernel)


def fused_available() -> dict[str, bool]:
    """``{kernel: True}`` for each fused kernel whose extension builds and loads (builds them)."""
    return {k: get_extension(k) is not None for k in KERNELS}
