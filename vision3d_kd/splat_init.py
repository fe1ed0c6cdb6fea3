"""Initial Gaussian positions and colours from a fitted radiance-field run (`--init RUN`)."""

from __future__ import annotations

from pathlib import Path

import torch
from torch import Tensor

from .errors import RunError

__all__ = ["points_from_run"]


@torch.no_grad()
def points_from_run(run: Path, n: int, generator: torch.Generator, step_size: float | None = None,
                    candidates: int = 8) -> tuple[Tensor, Tensor]:
    """Up to `n` world points [n,3] and colours [n,3] where the run's field holds matter: candidates
    uniform in its occupied cells (or its box), drawn in batches of `candidates * n` until n of them
    have density, then picked with probability proportional to the opacity of one marching step,
    alpha = 1 - exp(-sigma * step_size); colours from the colour head (default view direction)."""
    from .trainer import load_run

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
            pts = grid._cell_points(occupied[torch.randint(0, occupied.numel(), (m,), generator=generator)], generator)
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
