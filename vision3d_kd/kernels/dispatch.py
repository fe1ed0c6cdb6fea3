"""Which kernel implementation runs: the fused C++ extension or the plain-PyTorch reference.

The fused path is taken when its extension built and every tensor is a float32 CPU tensor;
CUDA tensors, float64 and ``V3KD_NO_EXT=1`` use the reference.
"""

from __future__ import annotations

import os
import pathlib
import threading
import time
from collections.abc import Callable
from types import ModuleType
from typing import TypeVar

import torch
from torch import Tensor

from .build import load_extension

__all__ = ["KERNELS", "get_extension", "use_fused", "fused_available", "n_threads", "run_tuned"]

T = TypeVar("T")

_CSRC = pathlib.Path(__file__).resolve().parent / "csrc"

# All kernels live in one extension (one translation unit each, built in parallel by ninja);
# bindings.cpp holds the only PYBIND11_MODULE.
KERNELS = ("hash", "grid", "composite", "splat", "march", "visibility")
_SOURCES = ["bindings.cpp", "hash.cpp", "grid.cpp", "composite.cpp", "splat.cpp", "march.cpp", "visibility.cpp"]


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


# Per call site: calls so far and, per thread count, a moving average of seconds per work item.
_TUNING: dict[str, dict] = {}
_TUNING_LOCK = threading.Lock()
_PROBE_EVERY = 8


def run_tuned(key: str, work: int, grain: int, call: Callable[[int], T]) -> T:
    """Run ``call(n_threads)`` with one thread or with :func:`n_threads`, whichever has been faster.

    On a machine shared with other jobs a second thread can cost more than it saves (every
    parallel region waits for it), so each call site ``key`` keeps a moving average of the time per
    work item for both choices, takes the faster, and tries the other one every 8th call. The
    kernels give bitwise identical results for any thread count. ``V3KD_THREADS=N`` fixes the count.
    """
    top = n_threads(work, grain)
    fixed = os.environ.get("V3KD_THREADS", "").strip()
    if top == 1 or fixed.isdigit():
        return call(min(top, max(1, int(fixed))) if fixed.isdigit() else 1)
    with _TUNING_LOCK:
        st = _TUNING.setdefault(key, {"calls": 0, "avg": {}})
        st["calls"] += 1
        avg = st["avg"]
        untried = [nt for nt in (top, 1) if nt not in avg]
        if untried:
            nt = untried[0]
        else:
            best, other = (1, top) if avg[1] <= avg[top] else (top, 1)
            nt = other if st["calls"] % _PROBE_EVERY == 0 else best
    t0 = time.perf_counter()
    out = call(nt)
    per_item = (time.perf_counter() - t0) / max(work, 1)
    with _TUNING_LOCK:
        old = st["avg"].get(nt)
        st["avg"][nt] = per_item if old is None else 0.7 * old + 0.3 * per_item
    return out


def use_fused(kernel: str, *tensors: Tensor) -> ModuleType | None:
    """The extension to use for these float tensors, or ``None`` to use the reference."""
    for t in tensors:
        if t.device.type != "cpu" or t.dtype != torch.float32:
            return None
    return get_extension(kernel)


def fused_available() -> dict[str, bool]:
    """``{kernel: True}`` for each fused kernel whose extension builds and loads (builds them)."""
    return {k: get_extension(k) is not None for k in KERNELS}
