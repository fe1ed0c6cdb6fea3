"""Fused C++/OpenMP occupancy-mask ray marching (`csrc/march.cpp`), same contract as `march_rays_ref`.

Used for float32 CPU tensors; anything else (or `V3KD_NO_EXT=1`, or no compiler) takes the reference.
"""

from __future__ import annotations

import torch
from torch import Tensor

from .dispatch import use_fused
from .march_ref import OccupancyMask, march_intervals_ref, march_rays_ref, start_points

__all__ = ["march_rays", "march_intervals"]


def march_rays(
    rays_o: Tensor,
    rays_d: Tensor,
    aabb: Tensor,
    step_size: float,
    mask: OccupancyMask | None = None,
    near: float = 0.0,
    jitter: bool | Tensor = False,
    generator: torch.Generator | None = None,
) -> tuple[Tensor, Tensor, Tensor]:
    """Packed samples (ray_indices [S] int64, t_starts [S], t_ends [S]) of rays [R,3] through `aabb` [2,3];
    steps of `step_size` scene units whose midpoint lies in an occupied cell of `mask` (all, when None)."""
    ext = use_fused("march", rays_o, rays_d)
    if ext is None:
        return march_rays_ref(rays_o, rays_d, aabb, step_size, mask, near, jitter, generator)
    t_near, t_far = start_points(rays_o.contiguous(), rays_d.contiguous(), aabb, step_size, near, jitter, generator)
    return march_intervals(rays_o, rays_d, t_near, t_far, step_size, mask)


def march_intervals(
    rays_o: Tensor,
    rays_d: Tensor,
    t_near: Tensor,
    t_far: Tensor,
    step_size: float,
    mask: OccupancyMask | None = None,
) -> tuple[Tensor, Tensor, Tensor]:
    """Packed samples (ray_indices [S] int64, t_starts [S], t_ends [S]): steps of `step_size` scene units
    from t_near [R] to t_far [R] (the last one cut at t_far; none where t_far <= t_near) along rays [R,3]
    whose midpoint lies in an occupied cell of `mask` (all, when None)."""
    ext = use_fused("march", rays_o, rays_d)
    if ext is None:
        return march_intervals_ref(rays_o, rays_d, t_near, t_far, step_size, mask)
    o, d = rays_o.contiguous(), rays_d.contiguous()
    t_near, t_far = t_near.float().contiguous(), t_far.float().contiguous()
    n = o.shape[0]
    if mask is not None:
        occ = mask.binary.to(torch.uint8).contiguous()
        box, res = mask.aabb.float().contiguous(), mask.resolution
    else:
        occ, box, res = None, torch.zeros(2, 3), 1
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
