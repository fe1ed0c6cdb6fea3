"""Ray marching through a box and an occupancy mask, in plain PyTorch (the test oracle of `march.py`).

Packed samples follow nerfacc's layout: (ray_indices [S] int64, t_starts [S], t_ends [S]), sorted by
ray. Rays have unit directions, so t is a Euclidean distance along the ray in scene units.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import Tensor

__all__ = ["OccupancyMask", "ray_aabb", "cell_index", "march_rays_ref", "march_intervals_ref", "start_points"]


class OccupancyMask(NamedTuple):
    """Which cells of a `resolution`³ lattice over `aabb` [2,3] (world units) may hold matter.

    binary: [resolution³] bool, cells flat x-major: i = (ix * R + iy) * R + iz."""

    binary: Tensor
    aabb: Tensor
    resolution: int


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


def cell_index(aabb: Tensor, resolution: int, x: Tensor) -> tuple[Tensor, Tensor]:
    """World points [N,3] -> (flat cell index [N] int64 of a `resolution`³ lattice over aabb, inside [N] bool)."""
    lo, hi = aabb[0], aabb[1]
    u = (x - lo) / (hi - lo)
    inside = ((u >= 0) & (u <= 1)).all(dim=-1)
    r = resolution
    ijk = (u * r).long().clamp_(0, r - 1)
    return (ijk[:, 0] * r + ijk[:, 1]) * r + ijk[:, 2], inside


def start_points(rays_o: Tensor, rays_d: Tensor, aabb: Tensor, step_size: float, near: float,
                 jitter: bool | Tensor, generator: torch.Generator | None) -> tuple[Tensor, Tensor]:
    """Marching interval per ray: (t_start [R], t_end [R]); empty (t_end == t_start) where the box is missed.
    `jitter` offsets each ray's first step by U[0, step) (training) to avoid banding: True draws the offsets
    from `generator`, a tensor [R] (or [R,k]: its first column) of uniforms in [0, 1) gives them."""
    t_near, t_far, hit = ray_aabb(rays_o, rays_d, aabb)
    t_near = t_near.clamp_min(near)
    if isinstance(jitter, Tensor):
        t_near = t_near + (jitter if jitter.dim() == 1 else jitter[:, 0]).to(t_near) * step_size
    elif jitter:
        t_near = t_near + torch.rand(t_near.shape, generator=generator, device=t_near.device) * step_size
    t_far = torch.where(hit, t_far, t_near)
    return t_near.contiguous(), t_far.contiguous()


def march_rays_ref(
    rays_o: Tensor,
    rays_d: Tensor,
    aabb: Tensor,
    step_size: float,
    mask: OccupancyMask | None = None,
    near: float = 0.0,
    jitter: bool | Tensor = False,
    generator: torch.Generator | None = None,
    max_points: int = 1 << 22,
) -> tuple[Tensor, Tensor, Tensor]:
    """Uniform steps of `step_size` (world units) through `aabb`, kept where the mask's cell is occupied.

    Returns packed samples sorted by ray: ray_indices [S] int64, t_starts [S], t_ends [S]."""
    t_near, t_far = start_points(rays_o, rays_d, aabb, step_size, near, jitter, generator)
    return march_intervals_ref(rays_o, rays_d, t_near, t_far, step_size, mask, max_points)


def march_intervals_ref(
    rays_o: Tensor,
    rays_d: Tensor,
    t_near: Tensor,
    t_far: Tensor,
    step_size: float,
    mask: OccupancyMask | None = None,
    max_points: int = 1 << 22,
) -> tuple[Tensor, Tensor, Tensor]:
    """Steps of `step_size` from t_near [R] to t_far [R] (world units; the last one cut at t_far) whose
    midpoint lies in an occupied cell of `mask` (all, when None). Packed samples sorted by ray."""
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
        cand = valid.nonzero(as_tuple=True)
        if mask is not None:
            mids = (starts + ends) * 0.5
            pts = rays_o[r, None, :] + rays_d[r, None, :] * mids[..., None]
            idx, inside = cell_index(mask.aabb, mask.resolution, pts[cand])
            keep = mask.binary[idx] & inside
            cand = (cand[0][keep], cand[1][keep])
        out_i.append(r[cand[0]])
        out_s.append(starts[cand])
        out_e.append(ends[cand])
    return torch.cat(out_i), torch.cat(out_s), torch.cat(out_e)
