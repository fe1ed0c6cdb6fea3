"""TSDF fusion (Curless & Levoy 1996): a mesh from rendered depth maps, for runs without a density to
threshold (Gaussian splats) and as an alternative for fields.

Every voxel centre of a lattice over the box is projected into each view; with D the surface distance
at its pixel (see view_depth; ∞ where the pixel is transparent) and r the voxel's distance from the camera,
the truncated signed distance clamp((D − r) / trunc, −1, 1) is averaged over the views where
D − r > −trunc (in front of, or just behind, the surface), colours over the views where |D − r| < trunc.
Voxels only ever seen deep behind a surface are inside (−1), voxels never seen are outside (+1).
World units throughout; the mesh is the zero level set (normals outward).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from ..cameras import Cameras
from ..errors import ConfigError, RunError
from ..kernels.visibility import hidden_update
from ..kernels.visibility_ref import lattice_points as points_of_axes
from ..kernels.visibility_ref import project, view_sdf
from ..render.occupancy import OccupancyGrid
from ..render.volume import RenderConfig
from .rig import view_depth, view_surface

__all__ = ["tsdf_fuse", "hidden_volume", "HiddenTracker", "project", "sample_tsdf", "lattice_axes", "lattice_points"]


def lattice_axes(aabb: Tensor, resolution: int) -> Tensor:
    """Per-axis coordinates [3,R] (world units) of the R³ lattice of `aabb`, corners included."""
    lo, hi = aabb[0].float().cpu(), aabb[1].float().cpu()
    return torch.stack([torch.linspace(float(lo[k]), float(hi[k]), resolution) for k in range(3)])


def lattice_points(aabb: Tensor, resolution: int) -> Tensor:
    """The R³ lattice of `aabb` (corners included) as world points [R³,3], x-major (index order x, y, z)."""
    return points_of_axes(lattice_axes(aabb, resolution))


class HiddenTracker:
    """Accumulates, over views, which lattice points of `aabb` lie more than `margin` (world units)
    behind the rendered surface in every view whose frustum holds them (and in at least one). The test per
    view is the fused kernel `kernels.visibility.hidden_update` (its PyTorch twin is the oracle)."""

    def __init__(self, aabb: Tensor, resolution: int, margin: float) -> None:
        self.axes, self.resolution, self.margin = lattice_axes(aabb, resolution), resolution, margin
        self.seen = torch.zeros(resolution**3, dtype=torch.bool)
        self.visible = torch.zeros(resolution**3, dtype=torch.bool)

    def update(self, cams: Cameras, i: int, depth: Tensor) -> None:
        """Add camera i (CPU cameras) with its surface distances depth [H*W] (inf where transparent)."""
        hidden_update(self.axes, cams, i, depth, self.margin, self.seen, self.visible)

    def hidden(self) -> np.ndarray:
        """Bool [R,R,R]: the points hidden behind the surface in every view so far."""
        return (self.seen & ~self.visible).reshape((self.resolution,) * 3).numpy()


@torch.no_grad()
def hidden_volume(model, grid: OccupancyGrid | None, settings: RenderConfig, cams: Cameras, aabb: Tensor,
                  resolution: int, margin_voxels: float = 2.0, min_opacity: float = 0.5,
                  progress: Callable[[int, int], None] | None = None) -> np.ndarray:
    """Bool [R,R,R] on the lattice of `aabb`: points more than margin_voxels lattice steps behind the
    rendered surface in every view whose frustum holds them (and in at least one). A radiance field's
    density behind its surface is never supervised, so these count as solid when meshing."""
    margin = margin_voxels * float(((aabb[1] - aabb[0]).cpu() / (resolution - 1)).max())
    tracker = HiddenTracker(aabb, resolution, margin)
    cams = cams.to("cpu")
    for i in range(len(cams)):
        tracker.update(cams, i, view_depth(model, grid, settings, cams, i, min_opacity))
        if progress is not None:
            progress(i + 1, len(cams))
    return tracker.hidden()


@torch.no_grad()
def tsdf_fuse(model, grid: OccupancyGrid | None, settings: RenderConfig, cams: Cameras, aabb: Tensor,
              resolution: int, trunc_voxels: float = 3.0, min_opacity: float = 0.5,
              progress: Callable[[int, int], None] | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Fuse the renders of `cams` into (tsdf [R,R,R] in [−1, 1], colour [R,R,R,3]) on the R³ lattice of
    `aabb` (corners included, index order x, y, z); trunc = trunc_voxels lattice steps."""
    if resolution < 8:
        raise ConfigError(f"--resolution must be >= 8, got {resolution}")
    pts = lattice_points(aabb, resolution)
    trunc = trunc_voxels * float(((aabb[1] - aabb[0]).cpu() / (resolution - 1)).max())
    n = len(pts)
    tsdf, weight = torch.zeros(n), torch.zeros(n)
    color, c_weight = torch.zeros(n, 3), torch.zeros(n)
    behind = torch.zeros(n, dtype=torch.bool)
    cams = cams.to("cpu")
    for i in range(len(cams)):
        depth, rgb = view_surface(model, grid, settings, cams, i, min_opacity)
        v, flat, sdf = view_sdf(cams, i, pts, depth)
        upd = sdf > -trunc
        u = v[upd]
        tsdf[u] += (sdf[upd] / trunc).clamp(-1, 1)
        weight[u] += 1
        behind[v[~upd]] = True
        near = sdf.abs() < trunc
        color[v[near]] += rgb[flat[near]]
        c_weight[v[near]] += 1
        if progress is not None:
            progress(i + 1, len(cams))
    seen = weight > 0
    out_tsdf = torch.where(seen, tsdf / weight.clamp_min(1), torch.where(behind, -1.0, 1.0))
    if not (out_tsdf < 0).any():
        raise RunError("no view sees an opaque surface: nothing to fuse (is the run empty?)")
    out_color = color / c_weight.clamp_min(1)[:, None]
    shape = (resolution,) * 3
    return out_tsdf.reshape(shape).numpy(), out_color.reshape(*shape, 3).numpy()


def sample_tsdf(volume: np.ndarray, aabb: Tensor, pts: np.ndarray) -> np.ndarray:
    """Trilinear samples [N,C] of a lattice volume [R,R,R,C] (corners at aabb's corners) at world points [N,3]."""
    vol = torch.from_numpy(np.ascontiguousarray(volume)).float().permute(3, 2, 1, 0)[None]  # [1,C,Z,Y,X]
    lo, hi = aabb[0].float().cpu(), aabb[1].float().cpu()
    g = (torch.from_numpy(pts).float() - lo) / (hi - lo) * 2 - 1
    out = F.grid_sample(vol, g[None, :, None, None], mode="bilinear", padding_mode="border", align_corners=True)
    return out[0, :, :, 0, 0].T.numpy()
