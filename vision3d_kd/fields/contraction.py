"""Scene contraction for unbounded captures (Mip-NeRF 360, eq. 10, with the L-infinity norm).

A foreground box `aabb` [2,3] (world units) is mapped affinely onto [-1,1]^3 (u = (x - centre) / half-size,
per axis) and everything beyond it is squeezed into the shell 1 < |c|_inf < 2:

    c = u                                  where |u|_inf <= 1
    c = (2 - 1 / |u|_inf) * u / |u|_inf    elsewhere

We use the L-infinity norm (nerfstudio's `SceneContraction(order=float("inf"))`) rather than Mip-NeRF 360's
L2 norm: its image is the whole cube [-2,2]^3, so a cubic grid or hash table over that cube has no unused
corners, and the foreground box maps onto the inner cube [-1,1]^3 exactly. Contracted coordinates `c` are
dimensionless; infinity maps to |c|_inf = 2.
"""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = ["contract", "uncontract", "box_centre_half", "CONTRACTED_EXTENT", "UNCONTRACT_MARGIN"]

CONTRACTED_EXTENT = 2.0  # contracted points lie in [-2, 2]^3
# uncontract clamps |c|_inf to 2 - margin, i.e. |u|_inf <= 1 / margin (a finite point for the outer cells)
UNCONTRACT_MARGIN = 1e-6


def box_centre_half(aabb: Tensor) -> tuple[Tensor, Tensor]:
    """(centre [3], half-size [3]) of a box aabb [2,3] (world units)."""
    aabb = aabb.reshape(2, 3)
    return (aabb[0] + aabb[1]) * 0.5, (aabb[1] - aabb[0]) * 0.5


def contract(x: Tensor, aabb: Tensor) -> Tensor:
    """World points x [N,3] -> contracted points c [N,3] in [-2,2]^3 (see the module docstring).

    Continuous (c = u on the box surface from both sides), identity-like (affine) inside the box, and
    tends to |c|_inf = 2 as |x| -> infinity. Differentiable everywhere with finite gradients."""
    centre, half = box_centre_half(aabb.to(x))
    u = (x - centre) / half
    n = u.abs().amax(dim=-1, keepdim=True)
    n_out = n.clamp_min(1.0)  # the outer branch only ever sees n >= 1: no division by ~0 (nor NaN gradients)
    scale = torch.where(n <= 1.0, torch.ones_like(n), (2.0 - 1.0 / n_out) / n_out)
    return u * scale


def uncontract(c: Tensor, aabb: Tensor) -> Tensor:
    """Contracted points c [N,3] in [-2,2]^3 -> world points [N,3]; the exact inverse of `contract`.

    |c|_inf is clamped to 2 - UNCONTRACT_MARGIN first, so points on (or past) the outer face come back
    finite, at |u|_inf = 1 / UNCONTRACT_MARGIN box half-sizes from the centre."""
    centre, half = box_centre_half(aabb.to(c))
    m = c.abs().amax(dim=-1, keepdim=True)
    m_out = m.clamp(1.0, CONTRACTED_EXTENT - UNCONTRACT_MARGIN)
    # |u| = 1 / (2 - |c|) on the shell; u = c * |u| / |c|; where |c| > 2 - margin the clamp shrinks c too
    scale = torch.where(m <= 1.0, torch.ones_like(m), 1.0 / ((CONTRACTED_EXTENT - m_out) * m))
    return centre + c * scale * half
