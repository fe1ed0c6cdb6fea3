"""Gaps closed: parts of a generated object that nearly touch its main body are joined by a short fine-tune.

Score distillation at the bundled prior's 64 px leaves thin necks below the solid level: a chair's legs or a
mushroom's stem end a few lattice cells short of the seat or the cap, and the floater measure
(`render/floaters.py`) then counts the whole part as matter outside the object. On the floater lattice
(twice the occupancy grid's resolution; solid: one marching step has `FLOATER_OPACITY`), every component
with at least `min_share` of the largest one's mass whose gap to the largest is at most `max_gap` (scene
units) is joined to it. The bridge is the set of empty cells that a binary closing of the two together
fills and a closing of either alone does not (26-neighbourhood, radius: half the gap plus one cell), so
concave corners of a single part are left as they are. The field is then fine-tuned for `steps` Adam steps:
density in the bridge pushed up to twice the solid level (a hinge on log density) with the colour of the
nearest solid cell (the field's own, before the fine-tune), while on points of the other occupied cells the
field's log density and colour are held to what they were. The bridge's cells become occupied in the grid.
"""

from __future__ import annotations

import copy
import math

import numpy as np
import torch
from torch import Tensor

from ..render.floaters import FLOATER_OPACITY, NEAR_SHARE, gaps_to, label_solid, lattice_density
from ..render.occupancy import OccupancyGrid, density_for_opacity

__all__ = ["bridge_mask", "close_gaps"]


def bridge_mask(density: np.ndarray, level: float, cell: float, max_gap: float,
                min_share: float = NEAR_SHARE) -> tuple[np.ndarray, list[float]]:
    """Empty cells of the [R,R,R] `density` lattice (cells of side `cell`, scene units) that join the largest
    solid component (density >= level, 26-connected, by mass) to each other component holding at least
    `min_share` of its mass whose gap to it is at most `max_gap`. Returns (bool [R,R,R], the joined gaps in
    scene units, largest first)."""
    from scipy import ndimage

    solid = density >= level
    cube = np.ones((3, 3, 3), bool)
    labels, mass = label_solid(density, level)
    bridge = np.zeros_like(solid)
    if len(mass) < 2 or max_gap <= 0:
        return bridge, []
    order = np.argsort(-mass)
    main = labels == order[0] + 1
    between = gaps_to(labels, int(order[0]) + 1) * cell  # empty space between each part and the main body
    boxes = ndimage.find_objects(labels)
    gaps = []
    for k in order[1:]:
        if mass[k] < min_share * mass[order[0]]:
            break
        part = labels == k + 1
        gap = float(between[k])
        if gap > max_gap:
            continue
        r = int(math.ceil(0.5 * gap / cell)) + 1
        # work in a box around the part grown by the closing radius and the gap: the bridge lies inside it
        pad = r + int(math.ceil(gap / cell)) + 2
        box = tuple(slice(max(s.start - pad, 0), min(s.stop + pad, solid.shape[i])) for i, s in enumerate(boxes[k]))
        a, b = main[box], part[box]
        joined = ndimage.binary_closing(a | b, structure=cube, iterations=r)
        alone = ndimage.binary_closing(a, structure=cube, iterations=r) | ndimage.binary_closing(b, structure=cube,
                                                                                                   iterations=r)
        bridge[box] |= joined & ~alone & ~solid[box]
        gaps.append(round(gap, 4))
    return bridge, gaps


def _nearest_solid(solid: np.ndarray, cells: np.ndarray) -> np.ndarray:
    """Flat index of the solid cell nearest to each of the flat `cells` of an [R,R,R] lattice."""
    from scipy import ndimage

    _, idx = ndimage.distance_transform_edt(~solid, return_indices=True)
    near = idx.reshape(3, -1)[:, cells]
    return np.ravel_multi_index(tuple(near), solid.shape)


def close_gaps(field, grid: OccupancyGrid, step_size: float, max_gap: float = 0.08, min_share: float = NEAR_SHARE,
               steps: int = 150, lr: float = 1e-3, batch: int = 4096, seed: int = 0) -> dict[str, object]:
    """Join the parts of `field` that nearly touch its main body (module docstring), in place: fine-tunes the
    field and marks the bridge occupied in `grid`. `step_size`: the marching step (scene units) that sets the
    solid level. Returns gaps_closed (count), gap_sizes (scene units), bridge_cells (lattice cells)."""
    res = 2 * grid.resolution
    density = lattice_density(field, grid, res)
    level = density_for_opacity(FLOATER_OPACITY, step_size)
    cell = float((grid.aabb[1] - grid.aabb[0]).max()) / res
    dens = density.cpu().numpy()
    bridge, gaps = bridge_mask(dens, level, cell, max_gap, min_share)
    info: dict[str, object] = {"gaps_closed": len(gaps), "gap_sizes": gaps, "bridge_cells": int(bridge.sum())}
    if not bridge.any():
        return info
    dev = grid.aabb.device
    probe = OccupancyGrid(grid.aabb, res, contract=grid.contract).to(dev)
    cells = np.flatnonzero(bridge)
    frozen = copy.deepcopy(field).eval().requires_grad_(False)
    near = torch.from_numpy(_nearest_solid(dens >= level, cells)).to(dev)
    with torch.no_grad():
        target_rgb = frozen(probe.cell_centres()[near])[1]
    bridge_t = torch.from_numpy(bridge.reshape(-1)).to(dev)
    held = torch.nonzero(grid.binary.reshape(-1)).reshape(-1)
    cells_t = torch.from_numpy(cells).to(dev)
    gen = torch.Generator(device=dev).manual_seed(seed)
    opt = torch.optim.Adam([p for p in field.parameters() if p.requires_grad], lr=lr)
    log_target = math.log(2.0 * level)
    field.train()
    for _ in range(steps):
        pick = torch.randint(len(cells_t), (batch,), generator=gen, device=dev)
        sigma_b, rgb_b = field(probe.cell_points(cells_t[pick], gen))
        pts = grid.cell_points(held[torch.randint(len(held), (2 * batch,), generator=gen, device=dev)], gen)
        idx, inside = probe.cell_index(pts)
        pts = pts[~(bridge_t[idx] & inside)]
        sigma_k, rgb_k = field(pts)
        with torch.no_grad():
            sigma_f, rgb_f = frozen(pts)
        loss = (torch.relu(log_target - _log(sigma_b)).mean() + (rgb_b - target_rgb[pick]).abs().mean()
                + (_log(sigma_k) - _log(sigma_f)).abs().mean() + (rgb_k - rgb_f).abs().mean())
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    field.eval()
    gidx, inside = grid.cell_index(probe.cell_centres()[cells_t])
    grid.binary.view(-1)[gidx[inside]] = True
    return info


def _log(sigma: Tensor) -> Tensor:
    """log(sigma + 1e-3): log density with a floor, so empty space does not dominate."""
    return torch.log(sigma.reshape(-1) + 1e-3)
