"""Floaters: matter disconnected from the object, found as connected components of a density lattice.

A lattice of `resolution`³ cells over the occupancy grid's box is filled with the field's density (the max of
a few points per cell; cells the grid marks empty hold 0), cells at or above `level` are solid, and solid
cells are grouped by 26-connectivity. `prune_floaters` clears the grid's cells outside the kept components
(grown by one cell, so the object's soft edge stays), which every renderer, mesh and export then skips; for a
layout, each box separately (its own components, kept against its own largest).
`floater_share` measures what is left: the share of rendered opacity (summed over views) that comes from
outside the largest component, by rendering with and without the other components.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from ..cameras import Cameras
from ..fields.base import points_in_boxes
from .image import render
from .occupancy import OccupancyGrid, density_for_opacity
from .volume import RenderConfig

__all__ = ["lattice_density", "label_solid", "gaps_to", "components", "prune_floaters", "floater_share",
           "FLOATER_OPACITY", "NEAR_SHARE"]

FLOATER_OPACITY = 0.05  # a cell is solid when one marching step through it has at least this opacity
NEAR_SHARE = 0.005  # share of the main body's mass from which a part near it is kept (or joined: generation.bridge)


@torch.no_grad()
def lattice_density(field, grid: OccupancyGrid, resolution: int, samples: int = 2, seed: int = 0,
                    chunk: int = 1 << 16) -> Tensor:
    """[R,R,R] max density (1/scene-unit) of `samples` random points per cell of a `resolution`³ lattice over
    `grid`'s box (x-major like the grid; a contracted grid's cells in contracted space); 0 in cells whose
    points the grid marks empty."""
    probe = OccupancyGrid(grid.aabb, resolution, contract=grid.contract).to(grid.aabb.device)
    gen = torch.Generator(device=grid.aabb.device).manual_seed(seed)
    n = resolution**3
    out = torch.zeros(n, device=grid.aabb.device)
    cells = torch.arange(n, device=grid.aabb.device)
    for _ in range(samples):
        for s in range(0, n, chunk):
            pts = probe.cell_points(cells[s:s + chunk], gen)
            keep = grid.occupied(pts)
            d = torch.zeros(len(pts), device=pts.device)
            if keep.any():
                d[keep] = field.density(pts[keep]).float().reshape(-1)
            out[s:s + chunk] = torch.maximum(out[s:s + chunk], d)
    return out.reshape(resolution, resolution, resolution)


def label_solid(density: np.ndarray, level: float) -> tuple[np.ndarray, np.ndarray]:
    """Solid cells (density >= level) of an [R,R,R] `density` lattice grouped by 26-connectivity: (labels
    [R,R,R], 0 for empty cells and k for the k-th component; mass [n], each component's summed density)."""
    from scipy import ndimage

    labels, n = ndimage.label(density >= level, structure=np.ones((3, 3, 3), bool))
    mass = np.asarray(ndimage.sum(density, labels, index=np.arange(1, n + 1)), np.float64) if n else np.zeros(0)
    return labels, mass


def gaps_to(labels: np.ndarray, main: int) -> np.ndarray:
    """Per component of `labels` (`label_solid`'s, components 1..n), the empty cells between it and component
    `main` (centre-to-centre distance of the nearest cells minus one; −1 for `main` itself) [n]."""
    from scipy import ndimage

    dist = ndimage.distance_transform_edt(labels != main)
    return np.asarray(ndimage.minimum(dist, labels, index=np.arange(1, int(labels.max()) + 1))) - 1.0


def components(density: Tensor, level: float, keep_ratio: float = 1.0, near: float = 0.0,
               near_share: float = NEAR_SHARE) -> tuple[Tensor, dict[str, float]]:
    """Solid cells (density >= level) of [R,R,R] `density` grouped by 26-connectivity; ([R,R,R] bool of the
    kept components, stats). Kept: the largest by mass (summed density), any other with at least
    `keep_ratio` of its mass, and any with at least `near_share` of it whose gap to the largest is at most
    `near` cells (a part split off by a thin neck, as `generation.bridge` joins them). Stats: components,
    kept, mass_share_outside (of the solid mass, outside the kept components)."""
    labels, mass = label_solid(density.cpu().numpy(), level)
    n = len(mass)
    if n == 0:
        return torch.zeros_like(density, dtype=torch.bool), {"components": 0, "kept": 0, "mass_share_outside": 0.0}
    big = mass >= keep_ratio * mass.max()
    if near > 0 and n > 1:
        big |= (gaps_to(labels, int(np.argmax(mass)) + 1) <= near) & (mass >= near_share * mass.max())
    kept = np.flatnonzero(big) + 1
    keep = np.isin(labels, kept)
    share = float(1.0 - mass[kept - 1].sum() / max(mass.sum(), 1e-30))
    return torch.from_numpy(keep).to(density.device), {"components": int(n), "kept": int(len(kept)),
                                                       "mass_share_outside": share}


def _kept_cells(grid: OccupancyGrid, keep: Tensor) -> Tensor:
    """[R³] bool over `grid`'s cells: occupied and inside `keep` ([R',R',R'] bool lattice over the same box,
    any resolution: a grid cell is kept when its centre's lattice cell is)."""
    probe = OccupancyGrid(grid.aabb, keep.shape[0], contract=grid.contract).to(grid.aabb.device)
    idx, inside = probe.cell_index(grid.cell_centres())
    return grid.binary & keep.reshape(-1)[idx] & inside


def _grow(keep: Tensor, cells: int) -> Tensor:
    """`keep` dilated by `cells` cells (26-neighbourhood)."""
    from scipy import ndimage

    if cells <= 0:
        return keep
    grown = ndimage.binary_dilation(keep.cpu().numpy(), structure=np.ones((3, 3, 3), bool), iterations=cells)
    return torch.from_numpy(grown).to(keep.device)


@torch.no_grad()
def prune_floaters(field, grid: OccupancyGrid, step_size: float, keep_ratio: float = 0.1,
                   opacity: float = FLOATER_OPACITY, boxes: Tensor | None = None,
                   box_steps: list[float] | None = None, box_gaps: list[float] | None = None) -> dict[str, float]:
    """Clear `grid`'s cells outside the field's main components (in place): components of its own
    resolution's lattice at the density where one `step_size` step has `opacity`; kept: the largest and any
    with at least `keep_ratio` of its mass, grown by one cell. With `boxes` [K,6] (a layout's, world
    xmin..zmax), each box is its own scene: its components are found among the cells whose centre lies in
    it, at the density where one `box_steps[k]` step (default `step_size`) has `opacity`, and kept against
    its own largest one, so a small object is never a floater of a large one; parts within `box_gaps[k]`
    (world units; default none) of a box's largest are kept too (`components`' near). Returns the `components`
    stats (summed over boxes) plus cells_cleared (share of the occupied cells)."""
    density = lattice_density(field, grid, grid.resolution)
    if boxes is None:
        keep, stats = components(density, density_for_opacity(opacity, step_size), keep_ratio)
    else:
        keep, stats = _components_per_box(density, grid, boxes, box_steps or [step_size] * len(boxes),
                                          box_gaps or [0.0] * len(boxes), keep_ratio, opacity)
    if stats["components"] == 0:
        return {**stats, "cells_cleared": 0.0}
    before = int(grid.binary.sum())
    grid.binary.copy_(_kept_cells(grid, _grow(keep, 1)))
    return {**stats, "cells_cleared": (before - int(grid.binary.sum())) / max(before, 1)}


def _components_per_box(density: Tensor, grid: OccupancyGrid, boxes: Tensor, steps: list[float],
                        gaps: list[float], keep_ratio: float, opacity: float) -> tuple[Tensor, dict[str, float]]:
    """`components` run in each box separately (`prune_floaters`): the union of the kept cells; stats summed
    (mass_share_outside weighted by each box's solid mass)."""
    inside = points_in_boxes(grid.cell_centres(), torch.as_tensor(boxes, dtype=torch.float32))
    keep = torch.zeros_like(density, dtype=torch.bool)
    n = kept = 0
    outside = total = 0.0
    cell = float((grid.aabb[1] - grid.aabb[0]).max()) / grid.resolution
    for k, (step, gap) in enumerate(zip(steps, gaps, strict=True)):
        mine = torch.where(inside[:, k].reshape(density.shape).to(density.device), density, 0.0)
        level = density_for_opacity(opacity, step)
        keep_k, stats = components(mine, level, keep_ratio, near=gap / cell)
        keep |= keep_k
        mass = float(mine[mine >= level].sum())
        n, kept = n + stats["components"], kept + stats["kept"]
        outside, total = outside + stats["mass_share_outside"] * mass, total + mass
    return keep, {"components": n, "kept": kept, "mass_share_outside": outside / total if total > 0 else 0.0}


@torch.no_grad()
def floater_share(field, grid: OccupancyGrid, cams: Cameras, settings: RenderConfig, resolution: int | None = None,
                  opacity: float = FLOATER_OPACITY) -> float:
    """Share of the opacity rendered over all of `cams` that comes from outside the field's largest connected
    component (a lattice at `resolution`, default twice the grid's, at the density where one marching step
    has `opacity`; the component grown by one cell): 1 - sum(opacity, other components hidden) / sum(opacity)."""
    res = resolution or 2 * grid.resolution
    density = lattice_density(field, grid, res)
    keep, stats = components(density, density_for_opacity(opacity, settings.step_size), 1.0)
    if stats["components"] == 0:
        return 0.0
    main = OccupancyGrid(grid.aabb, grid.resolution, contract=grid.contract).to(grid.aabb.device)
    main.load_state_dict(grid.state_dict())
    main.binary.copy_(_kept_cells(grid, _grow(keep, 1)))
    totals = [sum(float(render(field, cams, i, g, settings)["opacity"].sum()) for i in range(len(cams)))
              for g in (grid, main)]
    return float(max(0.0, 1.0 - totals[1] / max(totals[0], 1e-12)))
