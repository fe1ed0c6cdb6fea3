"""Plain-PyTorch reference of the Instant-NGP multiresolution hash encoding.

Readable and slow; autograd provides the backward. :mod:`vision3d_kd.kernels.hash` holds the fused
C++ twin, and the tests compare the two.
"""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = ["hash_encode_ref", "HASH_PRIMES", "level_is_dense"]

# Spatial hash primes of Instant-NGP (Mueller et al. 2022); the x prime is 1.
HASH_PRIMES = (1, 2654435761, 805459861)
_U32 = 0xFFFFFFFF


def level_is_dense(resolution: int, table_size: int) -> bool:
    """True when a level of ``resolution`` cells per axis indexes its table densely.

    A level has ``(R + 1) ** 3`` vertices; when they all fit in the ``T`` table rows the index is
    ``cx + cy * (R + 1) + cz * (R + 1) ** 2`` (no collisions), otherwise it is hashed.
    """
    return (resolution + 1) ** 3 <= table_size


def _corner_index(c: Tensor, resolution: int, table_size: int) -> Tensor:
    """Table row of integer vertices ``c: [N, 3]`` (int64) -> ``[N]`` int64 in ``[0, T)``."""
    if level_is_dense(resolution, table_size):
        r1 = resolution + 1
        return c[:, 0] + c[:, 1] * r1 + c[:, 2] * (r1 * r1)
    # uint32 arithmetic emulated in int64: only the low 32 bits of each product matter.
    h = c[:, 0] * HASH_PRIMES[0]
    h = h ^ ((c[:, 1] * HASH_PRIMES[1]) & _U32)
    h = h ^ ((c[:, 2] * HASH_PRIMES[2]) & _U32)
    return (h & _U32) % table_size


def hash_encode_ref(x: Tensor, table: Tensor, resolutions: Tensor) -> Tensor:
    """Multiresolution hash encoding (reference).

    Args:
        x: ``[N, 3]`` points in the unit cube ``[0, 1]^3``. Points outside extrapolate from the
            border cell. Differentiable: the weights are linear in ``x`` within a cell.
        table: ``[L, T, F]`` feature table, one block of ``T`` rows of ``F`` features per level.
        resolutions: ``[L]`` int32 (CPU) cells per axis of each level.

    Returns:
        ``[N, L * F]`` features, level-major: columns ``l*F .. l*F+F-1`` belong to level ``l``.
        Differentiable w.r.t. ``table`` and ``x``.

    Level ``l`` with ``R = resolutions[l]``: ``p = x * R``, cell ``c = clamp(floor(p), 0, R - 1)``,
    ``w = p - c`` and the features are the trilinear blend of the 8 vertices ``c + {0,1}^3``.
    """
    if x.dim() != 2 or x.shape[1] != 3:
        raise ValueError(f"x must be [N, 3], got {tuple(x.shape)}")
    if table.dim() != 3:
        raise ValueError(f"table must be [L, T, F], got {tuple(table.shape)}")
    n_levels, table_size, _ = table.shape
    if resolutions.numel() != n_levels:
        raise ValueError(f"resolutions has {resolutions.numel()} entries for {n_levels} levels")
    x = x.to(table.dtype)
    outs = []
    for level, res in enumerate(resolutions.tolist()):
        p = x * res
        c = torch.floor(p).clamp(0, res - 1)
        w = p - c
        ci = c.long()
        feat = None
        for corner in range(8):
            bits = torch.tensor([(corner >> k) & 1 for k in range(3)], device=x.device)
            idx = _corner_index(ci + bits, res, table_size)
            weight = torch.where(bits.bool(), w, 1.0 - w).prod(dim=1, keepdim=True)
            term = weight * table[level][idx]
            feat = term if feat is None else feat + term
        outs.append(feat)
    return torch.cat(outs, dim=1)
