"""Matmul precision for field MLPs: bfloat16 autocast where the CPU has AMX tiles (Sapphire Rapids and
later), where oneDNN runs bf16 matmuls ~2.5x faster than fp32; float32 elsewhere.

Weights, optimizer state and everything outside the network layers stay float32; autocast only
changes the dtype the Linear layers compute in (accumulation is fp32).

oneDNN builds a bf16 matmul kernel per input shape, which costs more than the matmul itself when the
row count changes every step (packed ray samples do), so bf16 calls pad their rows up to one of a
few bucket sizes (<= 1/8 waste) and the kernels are reused.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import lru_cache
from typing import Literal, get_args

import torch
from torch import Tensor

__all__ = ["Precision", "PRECISIONS", "resolve_precision", "run_in_precision"]

Precision = Literal["auto", "fp32", "bf16"]
PRECISIONS: tuple[str, ...] = get_args(Precision)


@lru_cache(maxsize=1)
def _cpu_has_amx() -> bool:
    try:
        return bool(torch.cpu._is_amx_tile_supported())
    except (AttributeError, RuntimeError):
        return False


def resolve_precision(precision: str, device: torch.device) -> str:
    """'auto' -> 'bf16' on CPUs with AMX, else 'fp32' (CUDA keeps fp32/TF32); other values unchanged."""
    if precision != "auto":
        return precision
    return "bf16" if device.type == "cpu" and _cpu_has_amx() else "fp32"


def bucket_rows(n: int) -> int:
    """Smallest row count >= n that is a multiple of 2^(bits(n) - 4) (at least 256): <= 1/8 padding."""
    granule = max(256, 1 << max(0, n.bit_length() - 4))
    return -(-n // granule) * granule


def run_in_precision(precision: str, fn: Callable[..., Tensor], *rows: Tensor) -> Tensor:
    """fn(*rows) with Linear layers in bf16 when `precision` resolves to bf16 (rows zero-padded to
    `bucket_rows` and the float32 result cropped back), else plain fp32 fn(*rows). rows: [N, ...]."""
    device = rows[0].device
    if resolve_precision(precision, device) != "bf16":
        return fn(*rows)
    n = rows[0].shape[0]
    pad = bucket_rows(n) - n
    if pad:
        rows = tuple(torch.cat([r, r.new_zeros((pad, *r.shape[1:]))]) for r in rows)
    with torch.autocast(device_type=device.type, dtype=torch.bfloat16):
        out = fn(*rows)
    return out[:n].float()
