"""Reusable memory for the large outputs of the fused kernels (gradients and forward results).

A dense gradient of a big grid (a 160^3 x 12 voxel grid is 196 MB) is allocated fresh on every
backward, and so are large forward outputs. On virtual machines a fresh allocation costs a page
fault per 4 KiB page, which can take longer than the kernel itself. This pool keeps a few anonymous
memory maps alive and hands one out again only when no tensor refers to it any more (a tensor made
by ``torch.frombuffer`` holds a reference to its map; ``sys.getrefcount`` tells when the last one
is gone). Autograd stores a returned gradient as ``param.grad`` without a copy, so a training loop
that sets ``grad = None`` each step reuses the same memory.

``V3KD_GRAD_POOL_MB`` caps the pooled memory (default 1024; ``0`` disables the pool).

Every other tensor comes from glibc's malloc, which serves blocks over a threshold (128 KiB, growing with
use up to 32 MiB) from fresh memory maps and trims freed heap tops back to the system, so a training step's
activations fault their pages in again every step. `keep_heap_memory` (called by the CLI) keeps blocks up to
32 MiB in the heap and freed memory in the process: on a layout's 60 generation steps, system time 5.7 s ->
1.2 s for the same user time. ``V3KD_KEEP_HEAP=0`` leaves malloc as it is.
"""

from __future__ import annotations

import math
import mmap
import os
import sys
import threading

import torch
from torch import Tensor

__all__ = ["pooled_empty", "clear_pool", "pooled_bytes", "POOL_MIN_BYTES", "keep_heap_memory"]

POOL_MIN_BYTES = 4 << 20  # smaller outputs use torch.empty: their page faults are cheap
_LOCK = threading.Lock()
_MAPS: list[mmap.mmap] = []


def _cap_bytes() -> int:
    try:
        return int(float(os.environ.get("V3KD_GRAD_POOL_MB", "1024")) * (1 << 20))
    except ValueError:
        return 1024 << 20


def _rounded(nbytes: int) -> int:
    """Map size for a request: rounded up to 1/8 of its power of two (so nearby sizes share maps)."""
    step = 1 << max(12, nbytes.bit_length() - 4)
    return -(-nbytes // step) * step


def _idle_maps() -> list[mmap.mmap]:
    """Maps no tensor refers to, oldest first. Call with the lock held."""
    # Evaluated as ``_MAPS[i]``, an idle map is referenced only by the list and getrefcount's argument.
    return [_MAPS[i] for i in range(len(_MAPS)) if sys.getrefcount(_MAPS[i]) <= 2]


def pooled_bytes() -> int:
    """Bytes currently held by the pool (in use or idle)."""
    with _LOCK:
        return sum(len(m) for m in _MAPS)


def clear_pool() -> None:
    """Forget every idle map (maps still used by a tensor are freed when that tensor dies)."""
    with _LOCK:
        _MAPS.clear()


def pooled_empty(shape: tuple[int, ...] | list[int]) -> Tensor:
    """An uninitialised float32 CPU tensor of ``shape`` (contents arbitrary: fill all of it).

    Large buffers come from the pool (their storage cannot be resized; everything else about them is
    an ordinary tensor); the caller must overwrite every element.
    """
    numel = math.prod(shape)
    nbytes = numel * 4
    cap = _cap_bytes()
    if nbytes < POOL_MIN_BYTES or nbytes > cap:
        return torch.empty(tuple(shape), dtype=torch.float32)
    with _LOCK:
        idle = _idle_maps()
        fits = [m for m in idle if nbytes <= len(m) < 2 * nbytes]
        if fits:
            mm = min(fits, key=len)
        else:
            size = _rounded(nbytes)
            total = sum(len(m) for m in _MAPS)
            for victim in idle:  # oldest idle maps first
                if total + size <= cap:
                    break
                _MAPS.remove(victim)
                total -= len(victim)
            if total + size > cap:
                return torch.empty(tuple(shape), dtype=torch.float32)
            mm = mmap.mmap(-1, size)
            _MAPS.append(mm)
        _MAPS.remove(mm)  # most recently used last
        _MAPS.append(mm)
        return torch.frombuffer(mm, dtype=torch.float32, count=numel).view(tuple(shape))


_M_TRIM_THRESHOLD, _M_TOP_PAD, _M_MMAP_THRESHOLD = -1, -2, -3  # glibc mallopt parameters (malloc.h)


def keep_heap_memory() -> bool:
    """Ask glibc's malloc to keep freed memory for reuse (module docstring); True if it took the settings
    (False on other C libraries, or with V3KD_KEEP_HEAP=0)."""
    if os.environ.get("V3KD_KEEP_HEAP", "1").strip() == "0" or not sys.platform.startswith("linux"):
        return False
    import ctypes
    import ctypes.util

    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    settings = ((_M_MMAP_THRESHOLD, 32 << 20), (_M_TRIM_THRESHOLD, 1 << 30), (_M_TOP_PAD, 256 << 20))
    return all(mallopt(ctypes.c_int(k), ctypes.c_int(v)) == 1 for k, v in settings)
