"""Occupancy grid over a scene box (Instant-NGP style): an EMA of density per cell and a binary mask
used to skip empty space while marching rays. Pure torch; works on any device.

A contracted grid (`contract=True`, for fields with scene contraction) lays its cells over the contracted
cube [-2,2]^3 (`fields/contraction.py`) instead of the box: the box (the foreground) is its inner half and
the rest of space the shell around it. Its methods still take and return world points."""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import Tensor

from ..fields.contraction import CONTRACTED_EXTENT, box_centre_half, contract, uncontract
from ..kernels.march_ref import OccupancyMask, cell_index

__all__ = ["OccupancyGrid", "density_for_opacity"]


def density_for_opacity(opacity: float, step_size: float) -> float:
    """The density (1/scene-unit) at which one marching step of `step_size` (scene units) has `opacity`:
    -ln(1 - opacity) / step_size (the occupancy grid's emptiness threshold)."""
    return -math.log(1.0 - opacity) / step_size


class OccupancyGrid(torch.nn.Module):
    """Density cache on a `resolution`³ lattice of cells covering `aabb` ([2,3], world units), or with
    `contract` the contracted cube [-2,2]^3 of all space around the foreground box `aabb`.

    `density[i]` is an EMA (max with decay) of the field's density at random points inside cell i;
    `binary[i]` says the cell may hold matter (density above a threshold). Cells are indexed
    x-major: i = ix * R² + iy * R + iz. The flag is saved with the state (buffer `contracted`); a state
    saved before it existed loads into either kind of grid unchanged.
    """

    def __init__(self, aabb: Tensor, resolution: int = 128, contract: bool = False) -> None:
        super().__init__()
        self.resolution = int(resolution)
        self.contract = bool(contract)
        n = self.resolution**3
        self.register_buffer("aabb", aabb.detach().clone().float().reshape(2, 3))
        self.register_buffer("density", torch.zeros(n))
        self.register_buffer("binary", torch.ones(n, dtype=torch.bool))
        self.register_buffer("updates", torch.zeros((), dtype=torch.long))
        self.register_buffer("contracted", torch.tensor(self.contract))

    def _load_from_state_dict(self, state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys,
                              error_msgs) -> None:
        key = prefix + "contracted"
        if key not in state_dict:  # saved before contraction existed: always a bounded grid
            state_dict[key] = torch.tensor(False)
        if bool(state_dict[key]) != self.contract:
            error_msgs.append(f"occupancy grid: saved with contract={bool(state_dict[key])}, built with "
                              f"contract={self.contract}")
        super()._load_from_state_dict(state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys,
                                      error_msgs)

    def _lattice_box(self) -> Tensor:
        """[2,3]: the box the cells tile, in world units, or for a contracted grid in contracted units."""
        if self.contract:
            e = CONTRACTED_EXTENT
            return self.aabb.new_tensor([[-e] * 3, [e] * 3])
        return self.aabb

    def cell_index(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """World points [N,3] -> (flat cell index [N] int64, inside-grid mask [N] bool; a contracted grid
        holds every finite point)."""
        if self.contract:
            return cell_index(self._lattice_box(), self.resolution, contract(x, self.aabb))
        return cell_index(self.aabb, self.resolution, x)

    def occupied(self, x: Tensor) -> Tensor:
        """True where world points [N,3] fall in an occupied cell inside the grid."""
        idx, inside = self.cell_index(x)
        return self.binary[idx] & inside

    def mask(self) -> OccupancyMask:
        """The occupied cells as the kernels' plain-tensor view, over world space. For a contracted grid
        the view is exact inside the foreground box only (where the contraction is affine): the same
        cells over the box `aabb` scaled by 2 about its centre."""
        if self.contract:
            centre, half = box_centre_half(self.aabb)
            box = torch.stack([centre - CONTRACTED_EXTENT * half, centre + CONTRACTED_EXTENT * half])
            return OccupancyMask(self.binary, box, self.resolution)
        return OccupancyMask(self.binary, self.aabb, self.resolution)

    def _lattice_points(self, ijk: Tensor) -> Tensor:
        """Cell coordinates [N,3] (cell units, e.g. index + 0.5 for centres) -> world points [N,3]."""
        box = self._lattice_box()
        pts = box[0] + ijk / self.resolution * (box[1] - box[0])
        return uncontract(pts, self.aabb) if self.contract else pts

    def cell_points(self, cells: Tensor, generator: torch.Generator | None) -> Tensor:
        """One uniformly random world point [N,3] inside each flat cell index [N] (uniform in contracted
        space for a contracted grid)."""
        r = self.resolution
        ijk = torch.stack([cells // (r * r), (cells // r) % r, cells % r], dim=-1).float()
        jitter = torch.rand(ijk.shape, generator=generator, device=ijk.device)
        return self._lattice_points(ijk + jitter)

    def cell_centres(self) -> Tensor:
        """World centres [R³,3] of every cell, in flat index order (contracted grid: uncontracted centres)."""
        r = self.resolution
        cells = torch.arange(r**3, device=self.aabb.device)
        ijk = torch.stack([cells // (r * r), (cells // r) % r, cells % r], dim=-1).float()
        return self._lattice_points(ijk + 0.5)

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
