"""Occupancy grid over a scene box (Instant-NGP style): an EMA of density per cell and a binary mask
used to skip empty space while marching rays. Pure torch; works on any device."""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import Tensor

from ..kernels.march_ref import OccupancyMask, cell_index

__all__ = ["OccupancyGrid", "density_for_opacity"]


def density_for_opacity(opacity: float, step_size: float) -> float:
    """The density (1/scene-unit) at which one marching step of `step_size` (scene units) has `opacity`:
    -ln(1 - opacity) / step_size (the occupancy grid's emptiness threshold)."""
    return -math.log(1.0 - opacity) / step_size


class OccupancyGrid(torch.nn.Module):
    """Density cache on a `resolution`³ lattice of cells covering `aabb` ([2,3], world units).

    `density[i]` is an EMA (max with decay) of the field's density at random points inside cell i;
    `binary[i]` says the cell may hold matter (density above a threshold). Cells are indexed
    x-major: i = ix * R² + iy * R + iz.
    """

    def __init__(self, aabb: Tensor, resolution: int = 128) -> None:
        super().__init__()
        self.resolution = int(resolution)
        n = self.resolution**3
        self.register_buffer("aabb", aabb.detach().clone().float().reshape(2, 3))
        self.register_buffer("density", torch.zeros(n))
        self.register_buffer("binary", torch.ones(n, dtype=torch.bool))
        self.register_buffer("updates", torch.zeros((), dtype=torch.long))

    def cell_index(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """World points [N,3] -> (flat cell index [N] int64, inside-box mask [N] bool)."""
        return cell_index(self.aabb, self.resolution, x)

    def occupied(self, x: Tensor) -> Tensor:
        """True where world points [N,3] fall in an occupied cell inside the box."""
        idx, inside = self.cell_index(x)
        return self.binary[idx] & inside

    def mask(self) -> OccupancyMask:
        """The occupied cells as the kernels' plain-tensor view."""
        return OccupancyMask(self.binary, self.aabb, self.resolution)

    def cell_points(self, cells: Tensor, generator: torch.Generator | None) -> Tensor:
        """One uniformly random world point [N,3] inside each flat cell index [N]."""
        r = self.resolution
        ijk = torch.stack([cells // (r * r), (cells // r) % r, cells % r], dim=-1).float()
        jitter = torch.rand(ijk.shape, generator=generator, device=ijk.device)
        lo, hi = self.aabb[0], self.aabb[1]
        return lo + (ijk + jitter) / r * (hi - lo)

    def cell_centres(self) -> Tensor:
        """World centres [R³,3] of every cell, in flat index order."""
        r = self.resolution
        cells = torch.arange(r**3, device=self.aabb.device)
        ijk = torch.stack([cells // (r * r), (cells // r) % r, cells % r], dim=-1).float()
        return self.aabb[0] + (ijk + 0.5) / r * (self.aabb[1] - self.aabb[0])

    @torch.no_grad()
    def update(
        self,
        density_fn: Callable[[Tensor], Tensor],
        threshold: float,
        decay: float = 0.95,
        warmup: bool = False,
        generator: torch.Generator | None = None,
        chunk: int = 1 << 15,
    ) -> None:
        """One refresh. `threshold` is a density (1/scene-unit); cells whose EMA exceeds
        min(threshold, mean EMA) are occupied. During warm-up every cell is refreshed, later a
        random quarter of all cells plus as many occupied cells (as Instant-NGP does)."""
        n = self.density.numel()
        dev = self.density.device
        if warmup:
            cells = torch.arange(n, device=dev)
        else:
            rand_cells = torch.randint(0, n, (n // 4,), generator=generator, device=dev)
            occ = torch.nonzero(self.binary).flatten()
            if occ.numel() > 0:
                pick = torch.randint(0, occ.numel(), (min(n // 4, occ.numel()),), generator=generator, device=dev)
                cells = torch.cat([rand_cells, occ[pick]])
            else:
                cells = rand_cells
        new = torch.empty(cells.numel(), device=dev)
        for s in range(0, cells.numel(), chunk):
            pts = self.cell_points(cells[s : s + chunk], generator)
            new[s : s + chunk] = density_fn(pts).float().reshape(-1)
        decayed = self.density * decay
        decayed.scatter_reduce_(0, cells, new, reduce="amax")
        self.density.copy_(decayed)
        # ">=" keeps a constant-density field (e.g. a freshly initialised grid) fully occupied
        # instead of fully empty, which would starve it of samples and gradients forever.
        thresh = min(threshold, float(self.density.mean()))
        self.binary.copy_(self.density >= thresh)
        self.updates += 1

    def occupancy_fraction(self) -> float:
        """Fraction of cells currently marked occupied."""
        return float(self.binary.float().mean())
