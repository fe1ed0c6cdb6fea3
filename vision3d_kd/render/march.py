"""Occupancy-grid ray marching into packed samples (nerfacc layout: ray_indices, t_starts, t_ends).

`march_rays` uses the fused C++/OpenMP kernel (`kernels/csrc/march.cpp`) for float32 CPU tensors and
`march_rays_ref` (plain PyTorch, the test oracle) otherwise. Rays have unit directions, so t is a
Euclidean distance in scene units.
"""

from __future__ import annotations

import pathlib

import torch
from torch import Tensor

from ..kernels.build import extensions_disabled, load_extension
from .occupancy import OccupancyGrid

__all__ = ["ray_aabb", "march_rays", "march_rays_ref"]

_SRC = pathlib.Path(__file__).resolve().parents[1] / "kernels" / "csrc" / "march.cpp"


def ray_aabb(rays_o: Tensor, rays_d: Tensor, aabb: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """Slab test. rays_o, rays_d: [R,3]; aabb: [2,3]. Returns t_near [R] (>= 0), t_far [R], hit [R] bool.

    A ray whose direction is (near) zero misses: its slab interval would span ~1e12 and the marcher would
    step through it for ever (e.g. a normal taken at a cone's apex, where the SDF gradient vanishes)."""
    inv = 1.0 / torch.where(rays_d.abs() < 1e-12, torch.full_like(rays_d, 1e-12), rays_d)
    t0 = (aabb[0] - rays_o) * inv
    t1 = (aabb[1] - rays_o) * inv
    t_near = torch.minimum(t0, t1).amax(dim=-1).clamp_min(0.0)
    t_far = torch.maximum(t0, t1).amin(dim=-1)
    moving = rays_d.norm(dim=-1) > 1e-3
    return t_near, t_far, (t_far > t_near) & moving


def march_rays_ref(
    rays_o: Tensor,
    rays_d: Tensor,
    aabb: Tensor,
    step_size: float,
    grid: OccupancyGrid | None = None,
    near: float = 0.0,
    jitter: bool = False,
    generator: torch.Generator | None = None,
    max_points: int = 1 << 22,
) -> tuple[Tensor, Tensor, Tensor]:
    """Uniform steps of `step_size` (world units) through the box, kept where the grid is occupied.

    Returns packed samples sorted by ray: ray_indices [S] int64, t_starts [S], t_ends [S].
    `jitter` offsets each ray's first step by U[0, step) (training) to avoid banding.
    """
    t_near, t_far = _start_points(rays_o, rays_d, aabb, step_size, near, jitter, generator)
    rid = torch.nonzero(t_far > t_near).flatten()
    empty = torch.zeros(0, device=rays_o.device)
    if rid.numel() == 0:
        return torch.zeros(0, dtype=torch.long, device=rays_o.device), empty, empty
    tn, tf = t_near[rid], t_far[rid]
    n_steps = int(torch.ceil((tf - tn).max() / step_size).item()) + 1
    out_i, out_s, out_e = [], [], []
    per_chunk = max(1, max_points // n_steps)
    steps = torch.arange(n_steps, device=rays_o.device, dtype=rays_o.dtype)
    for c in range(0, rid.numel(), per_chunk):
        r = rid[c : c + per_chunk]
        starts = tn[c : c + per_chunk, None] + steps[None, :] * step_size  # [r, n]
        ends = torch.minimum(starts + step_size, tf[c : c + per_chunk, None])
        valid = starts < tf[c : c + per_chunk, None]
        if grid is not None:
            mids = (starts + ends) * 0.5
            pts = rays_o[r, None, :] + rays_d[r, None, :] * mids[..., None]
            cand = valid.nonzero(as_tuple=True)
            keep = grid.occupied(pts[cand])
            sel = (cand[0][keep], cand[1][keep])
        else:
            sel = valid.nonzero(as_tuple=True)
        out_i.append(r[sel[0]])
        out_s.append(starts[sel])
        out_e.append(ends[sel])
    return torch.cat(out_i), torch.cat(out_s), torch.cat(out_e)


def _start_points(rays_o, rays_d, aabb, step_size, near, jitter, generator):
    t_near, t_far, hit = ray_aabb(rays_o, rays_d, aabb)
    t_near = t_near.clamp_min(near)
    if jitter:
        t_near = t_near + torch.rand(t_near.shape, generator=generator, device=t_near.device) * step_size
    t_far = torch.where(hit, t_far, t_near)  # a missed ray gets an empty interval
    return t_near.contiguous(), t_far.contiguous()


def march_rays(
    rays_o: Tensor,
    rays_d: Tensor,
    aabb: Tensor,
    step_size: float,
    grid: OccupancyGrid | None = None,
    near: float = 0.0,
    jitter: bool = False,
    generator: torch.Generator | None = None,
) -> tuple[Tensor, Tensor, Tensor]:
    """Same contract as `march_rays_ref`; fused C++ when the tensors are float32 on the CPU."""
    ext = None
    if rays_o.device.type == "cpu" and rays_o.dtype == torch.float32 and not extensions_disabled():
        ext = load_extension("march", [_SRC])
    if ext is None:
        return march_rays_ref(rays_o, rays_d, aabb, step_size, grid, near, jitter, generator)
    o, d = rays_o.contiguous(), rays_d.contiguous()
    t_near, t_far = _start_points(o, d, aabb, step_size, near, jitter, generator)
    n = o.shape[0]
    if grid is not None:
        occ = grid.binary.to(torch.uint8).contiguous()
        box, res = grid.aabb.float().contiguous(), grid.resolution
    else:
        occ, box, res = None, aabb.float().contiguous(), 1
    occ_ptr = occ.data_ptr() if occ is not None else 0
    nt = max(1, torch.get_num_threads())
    counts = torch.empty(n, dtype=torch.int64)
    ext.march_count(o.data_ptr(), d.data_ptr(), t_near.data_ptr(), t_far.data_ptr(), n, float(step_size),
                    occ_ptr, box.data_ptr(), res, counts.data_ptr(), nt)
    offsets = torch.cumsum(counts, 0) - counts
    total = int(counts.sum())
    ray_i = torch.empty(total, dtype=torch.int64)
    t_s = torch.empty(total, dtype=torch.float32)
    t_e = torch.empty(total, dtype=torch.float32)
    if total:
        ext.march_fill(o.data_ptr(), d.data_ptr(), t_near.data_ptr(), t_far.data_ptr(), n, float(step_size),
                       occ_ptr, box.data_ptr(), res, offsets.data_ptr(), ray_i.data_ptr(), t_s.data_ptr(),
                       t_e.data_ptr(), nt)
    return ray_i, t_s, t_e
