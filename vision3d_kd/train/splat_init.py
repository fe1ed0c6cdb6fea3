"""Initial Gaussian positions and colours (`fit --field splats --init SOURCE`): a fitted radiance-field
run directory, or a point cloud / splat file (.ply with x,y,z and optional red,green,blue or 3DGS
f_dc_*, .splat, .spz)."""

from __future__ import annotations

from pathlib import Path

import torch
from torch import Tensor

from ..errors import RunError

__all__ = ["points_from_run", "points_from_file", "initial_points"]


@torch.no_grad()
def points_from_run(run: Path, n: int, generator: torch.Generator, step_size: float | None = None,
                    candidates: int = 8) -> tuple[Tensor, Tensor]:
    """Up to `n` world points [n,3] and colours [n,3] where the run's field holds matter: candidates
    uniform in its occupied cells (or its box), drawn in batches of `candidates * n` until n of them
    have density, then picked with probability proportional to the opacity of one marching step,
    alpha = 1 - exp(-sigma * step_size); colours from the colour head (default view direction)."""
    from ..runs import load_run

    field, grid, cfg = load_run(run)
    if getattr(field, "name", "") == "splats":
        raise RunError(f"{run}: --init needs a radiance-field run, got a splats run")
    step = step_size or float(cfg.get("render", {}).get("step_size", 0.01))
    lo, hi = field.aabb[0], field.aabb[1]
    m = max(n * candidates, 4096)
    occupied = torch.nonzero(grid.binary).flatten() if grid is not None else torch.zeros(0, dtype=torch.long)
    pts_all, alpha_all = [], []
    for _ in range(32):  # draw candidate batches until enough of them hold matter
        if occupied.numel():
            pts = grid.cell_points(occupied[torch.randint(0, occupied.numel(), (m,), generator=generator)], generator)
        else:
            pts = lo + torch.rand(m, 3, generator=generator) * (hi - lo)
        sigma = torch.cat([field.density(c) for c in pts.split(65536)])
        pts_all.append(pts)
        alpha_all.append(1 - torch.exp(-sigma * step))
        if int(sum(int((a > 1e-4).sum()) for a in alpha_all)) >= n:
            break
    pts, alpha = torch.cat(pts_all), torch.cat(alpha_all)
    if float(alpha.sum()) <= 0:
        raise RunError(f"{run}: the field is empty (no density to place Gaussians on)")
    keep = torch.multinomial(alpha, min(n, int((alpha > 0).sum())), replacement=False, generator=generator)
    pts = pts[keep]
    _, rgb = field(pts)
    return pts, rgb.clamp(0, 1)


def points_from_file(path: Path, n: int, generator: torch.Generator) -> tuple[Tensor, Tensor]:
    """Up to `n` points [n,3] and colours [n,3] in [0,1] from a point-cloud PLY (x, y, z and optional
    red/green/blue, 8-bit or float) or a splat file (.ply in the 3DGS layout, .splat, .spz: means
    and DC colours). A random subset is taken when the file has more than `n` points."""
    import numpy as np

    from ..data.splat_io import read_ply_vertices, read_splats
    from ..errors import DataError
    from ..fields.splats import SH_C0

    path = Path(path)
    if path.suffix.lower() == ".ply":
        cols = read_ply_vertices(path)
        if "f_dc_0" in cols and "opacity" in cols:
            params = read_splats(path)
            pts, rgb = params["means"], 0.5 + SH_C0 * params["sh"][:, 0]
        else:
            if not all(k in cols for k in ("x", "y", "z")):
                raise DataError(f"{path}: point cloud PLY needs x, y, z vertex properties")
            pts = torch.from_numpy(np.stack([cols[k] for k in "xyz"], 1).astype(np.float32))
            if all(k in cols for k in ("red", "green", "blue")):
                raw = np.stack([cols[k] for k in ("red", "green", "blue")], 1)
                scale = 255.0 if raw.dtype.kind in "iu" else 1.0
                rgb = torch.from_numpy((raw / scale).astype(np.float32))
            else:
                rgb = torch.full_like(pts, 0.5)
    else:
        params = read_splats(path)
        pts, rgb = params["means"], 0.5 + SH_C0 * params["sh"][:, 0]
    if not torch.isfinite(pts).all():
        raise DataError(f"{path}: non-finite point coordinates")
    if pts.shape[0] > n:
        keep = torch.randperm(pts.shape[0], generator=generator)[:n]
        pts, rgb = pts[keep], rgb[keep]
    return pts, rgb.clamp(0, 1)


def initial_points(source: str, n: int, generator: torch.Generator) -> tuple[Tensor, Tensor]:
    """Points and colours from `source`: a run directory (field density) or a file (see module doc)."""
    from ..errors import DataError

    path = Path(source)
    if path.is_dir():
        return points_from_run(path, n, generator)
    if path.is_file():
        return points_from_file(path, n, generator)
    raise DataError(f"{path}: --init source not found (a field run directory or a .ply/.splat/.spz file)")
