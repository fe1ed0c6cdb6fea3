"""Plain-PyTorch reference of the hidden-interior test (the oracle of `csrc/visibility.cpp`): which points
of a lattice one camera sees, and which it sees in front of (or within `margin` behind) its surface."""

from __future__ import annotations

import torch
from torch import Tensor

from ..cameras import Cameras

__all__ = ["project", "lattice_points", "view_sdf", "hidden_update_ref"]


def project(cams: Cameras, i: int, pts: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """World points [N,3] into camera i (OpenGL: looks down −z): pixel x, y [N] (continuous, centre of
    pixel (i, j) at (i + 0.5, j + 0.5)) and depth along the optical axis [N] (> 0 in front)."""
    c2w = cams.c2w[i]
    local = (pts - c2w[:3, 3]) @ c2w[:3, :3]
    z = -local[:, 2]
    safe = torch.where(z > 1e-6, z, torch.ones_like(z))
    px = cams.fx[i] * local[:, 0] / safe + cams.cx[i]
    py = -cams.fy[i] * local[:, 1] / safe + cams.cy[i]
    return px, py, z


def lattice_points(axes: Tensor) -> Tensor:
    """The lattice of per-axis coordinates axes [3,R] as world points [R³,3], x-major (index order x, y, z)."""
    return torch.stack(torch.meshgrid(*axes, indexing="ij"), -1).reshape(-1, 3)


def view_sdf(cams: Cameras, i: int, pts: Tensor, depth: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """Points [N,3] against view i's surface distances depth [H*W]: indices [M] of the points inside its
    frustum, their pixel [M], and the surface distance at that pixel minus their distance from the camera."""
    px, py, z = project(cams, i, pts)
    ix, iy = px.floor().long(), py.floor().long()
    v = ((z > 0) & (ix >= 0) & (ix < cams.width) & (iy >= 0) & (iy < cams.height)).nonzero().flatten()
    flat = iy[v] * cams.width + ix[v]
    return v, flat, depth[flat] - (pts[v] - cams.c2w[i, :3, 3]).norm(dim=-1)


def hidden_update_ref(axes: Tensor, cams: Cameras, i: int, depth: Tensor, margin: float, seen: Tensor,
                      visible: Tensor) -> None:
    """Update bool masks seen, visible [R³] (in place) with camera i (CPU) and its surface distances
    depth [H*W] (inf where transparent): a lattice point inside the image is seen, and visible unless its
    distance from the camera exceeds its pixel's surface distance by more than `margin` (world units)."""
    v, _, sdf = view_sdf(cams, i, lattice_points(axes), depth)
    seen[v] = True
    visible[v[sdf > -margin]] = True
