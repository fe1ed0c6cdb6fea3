"""Samples along rays through all of space for fields with scene contraction (`fields/contraction.py`).

Inside the foreground box: uniform steps of `step_size` (world units), the bounded marcher's own steps.
Outside it: one sample per shell of the contracted cube, the shells' contracted radii 2 - 1/rho uniform
(rho: |u|_inf, in box half-sizes), i.e. uniform in "disparity" 1/rho out to rho_far (`far_ratio` box
half-sizes, contracted radius 2 - 1/far_ratio). A shell of level rho is the box scaled by rho about its
centre, so where a ray crosses it is a slab test: exact for any ray, from inside the box or outside it,
entering the box or missing it. For a ray from the box centre the crossings are exactly uniform in 1/t
(t: distance along the ray), and for every ray they tend to that far away. The shell step equals the
box's contracted step (step_size / smallest half-size), so the background gets about as many samples
per unit of contracted radius as the foreground, which is what the occupancy grid (uniform in contracted
space) resolves. A shell interval whose contracted chord is longer than that step (a ray grazing a shell's
face) is split into equal parts in t.

Samples are contiguous per ray (each ends where the next begins) before the occupancy test drops the
ones whose midpoint lies in an empty cell; t in world units, packed and sorted by ray (nerfacc's layout).
Plain vectorised torch: no loop over rays.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from ..fields.contraction import box_centre_half, contract
from ..kernels.march import march_intervals
from ..kernels.march_ref import OccupancyMask

__all__ = ["march_contracted", "shell_levels", "FAR_RATIO"]

FAR_RATIO = 1e3  # background sampling stops at rho = 1e3 box half-sizes (contracted radius 2 - 1e-3)


def shell_levels(n_rays: int, step_size: float, half: Tensor, far_ratio: float, jitter: Tensor | None) -> Tensor:
    """Shell levels rho [R, K] (> 1, increasing, box half-sizes) with 1/rho uniform from 1 to 1/far_ratio in
    steps of the box's contracted step (step_size / min half-size); `jitter` [R] in [0, 1) shifts each
    ray's levels by that fraction of a step (the far level stays fixed)."""
    s_far = 1.0 / far_ratio
    d_contracted = step_size / float(half.min())
    k = max(1, math.ceil((1.0 - s_far) / d_contracted))
    ds = (1.0 - s_far) / k
    idx = torch.arange(1, k + 1, device=half.device, dtype=half.dtype)[None, :].expand(n_rays, k)
    if jitter is not None:
        idx = idx - jitter[:, None]
    s = (1.0 - idx * ds).clamp_min(s_far)
    s = torch.cat([s, s.new_full((n_rays, 1), s_far)], dim=1)  # the far level, whatever the jitter
    return 1.0 / s


def shell_crossings(rays_o: Tensor, rays_d: Tensor, centre: Tensor, half: Tensor, rho: Tensor
                    ) -> tuple[Tensor, Tensor, Tensor]:
    """Slab test of rays [R,3] against the boxes centre ± rho * half for levels rho [R, K]: (t_in [R,K],
    t_out [R,K], hit [R,K]); t in world units, not clamped to the ray's start."""
    d = torch.where(rays_d.abs() < 1e-12, torch.full_like(rays_d, 1e-12), rays_d)
    inv = (1.0 / d)[:, None, :]
    a = (centre - rays_o)[:, None, :]  # [R,1,3]
    ext = rho[..., None] * half  # [R,K,3]
    t0, t1 = (a - ext) * inv, (a + ext) * inv
    t_in = torch.minimum(t0, t1).amax(dim=-1)
    t_out = torch.maximum(t0, t1).amin(dim=-1)
    moving = (rays_d.norm(dim=-1) > 1e-3)[:, None]
    return t_in, t_out, (t_out > t_in) & moving


def _split_long(rays_o: Tensor, rays_d: Tensor, aabb: Tensor, flat: Tensor, width: int, ts: Tensor, te: Tensor,
                d_contracted: float, max_split: int = 4096) -> tuple[Tensor, Tensor, Tensor]:
    """Split background intervals (ts, te [B], world units; flat indices [B] into the [R, width] table)
    whose contracted chord is longer than the contracted step into equal parts in t. A ray that grazes a
    shell (runs along a face of the scaled box) crosses no new shell for a while, so its shell interval
    can be long in contracted space; radial crossings are one step long and stay whole."""
    if len(flat) == 0:
        return flat, ts, te
    ray = flat // width
    o, d = rays_o.index_select(0, ray), rays_d.index_select(0, ray)
    chord = (contract(torch.addcmul(o, d, te[:, None]), aabb) - contract(torch.addcmul(o, d, ts[:, None]), aabb))
    n_split = torch.round(chord.abs().amax(dim=-1) / d_contracted).clamp(1, max_split).long()
    if int(n_split.max()) == 1:
        return flat, ts, te
    src = torch.repeat_interleave(torch.arange(len(flat), device=flat.device), n_split)
    first = torch.cumsum(n_split, 0) - n_split
    part = (torch.arange(len(src), device=flat.device) - first.index_select(0, src)).to(ts.dtype)
    n = n_split.index_select(0, src).to(ts.dtype)
    t0, length = ts.index_select(0, src), (te - ts).index_select(0, src)
    new_ts = t0 + length * (part / n)
    new_te = torch.where(part + 1 == n, te.index_select(0, src), t0 + length * ((part + 1) / n))
    return flat.index_select(0, src), new_ts, new_te


def _pack(flat: Tensor, width: int, k: int, fg_ray: Tensor, n_rays: int) -> tuple[Tensor, Tensor, Tensor]:
    """Output positions of the kept background intervals (flat indices [B] into the [R, width] interval
    table, sorted) and of the foreground steps (rays fg_ray [F], sorted), so that each ray lists its
    pre-box intervals (columns <= k), foreground steps, then post-box intervals (columns > k + 1) in
    order. Returns (positions of the intervals [B], positions of the steps [F], ray of each interval [B])."""
    ray, col = flat // width, flat % width
    n_bg = torch.bincount(ray, minlength=n_rays)
    n_fg = torch.bincount(fg_ray, minlength=n_rays)
    total = n_bg + n_fg
    offset = torch.cumsum(total, 0) - total
    bg_first = torch.cumsum(n_bg, 0) - n_bg
    rank = torch.arange(len(flat), device=flat.device) - bg_first.index_select(0, ray)
    pos_bg = offset.index_select(0, ray) + rank + (col > k + 1) * n_fg.index_select(0, ray)
    n_pre = torch.zeros(n_rays, dtype=torch.long, device=flat.device).index_add_(0, ray, (col <= k).long())
    fg_first = torch.cumsum(n_fg, 0) - n_fg
    pos_fg = (offset + n_pre - fg_first).index_select(0, fg_ray) + torch.arange(len(fg_ray), device=fg_ray.device)
    return pos_bg, pos_fg, ray


def march_contracted(rays_o: Tensor, rays_d: Tensor, aabb: Tensor, step_size: float, grid=None, near: float = 0.0,
                     jitter: bool | Tensor = False, generator: torch.Generator | None = None,
                     far_ratio: float = FAR_RATIO
                     ) -> tuple[Tensor, Tensor, Tensor]:
    """Packed samples (ray_indices [S] int64, t_starts [S], t_ends [S]; world units) of rays [R,3] (unit
    directions) from t = near to the far shell, through the foreground box `aabb` [2,3] and the space
    around it (see the module docstring). `grid`: a contracted `OccupancyGrid` (None: keep all). `jitter`:
    the foreground steps start U[0, step) into the box (or past `near` for a camera inside it), as the
    bounded marcher's, and each ray's shells shift by U[0, 1) of a shell step."""
    dev, n = rays_o.device, rays_o.shape[0]
    centre, half = box_centre_half(aabb.to(rays_o))
    if isinstance(jitter, Tensor):  # given uniforms [R,2]: foreground, shells
        j_fg, j_bg = jitter[:, 0].to(dev), jitter[:, 1].to(dev)
    else:
        j_fg = torch.rand(n, generator=generator, device=dev) if jitter else None
        j_bg = torch.rand(n, generator=generator, device=dev) if jitter else None
    rho = shell_levels(n, step_size, half, far_ratio, j_bg)  # [R, K]
    k = rho.shape[1]
    ones = torch.ones(n, 1, device=dev, dtype=rho.dtype)
    t_in, t_out, hit = shell_crossings(rays_o, rays_d, centre, half, torch.cat([ones, rho], dim=1))
    # the foreground interval [t_fg0, t_fg1]: the box from max(entry, near), jittered as the bounded marcher
    fg_hit = hit[:, 0] & (t_out[:, 0] > near)
    t_fg0 = t_in[:, 0].clamp_min(near)
    if j_fg is not None:
        t_fg0 = t_fg0 + j_fg * step_size
    t_fg1 = t_out[:, 0]
    t_fg0 = torch.minimum(t_fg0, t_fg1)
    t_fg0, t_fg1 = torch.where(fg_hit, t_fg0, near), torch.where(fg_hit, t_fg1, near)
    # every boundary of the ray, in order: start, shell entries (outermost first), the foreground interval,
    # shell exits; levels the ray misses or has already passed collapse into empty intervals (cummax)
    start = torch.where(fg_hit & (t_in[:, 0] <= near), t_fg0, torch.full_like(t_fg0, near))
    neg = torch.full_like(t_in, -math.inf)
    t_in, t_out = torch.where(hit, t_in, neg), torch.where(hit, t_out, neg)
    t_in[:, 0] = torch.where(fg_hit, t_fg0, -math.inf)
    t_out[:, 0] = torch.where(fg_hit, t_fg1, -math.inf)
    row = torch.cat([start[:, None], t_in.flip(1), t_out], dim=1)  # [R, 2K + 3]
    row = torch.maximum(row, start[:, None]).cummax(dim=1).values
    ts, te = row[:, :-1], row[:, 1:]
    keep = te > ts
    keep[:, k + 1] = False  # the foreground interval: marched in steps below
    flat = keep.reshape(-1).nonzero().squeeze(1)
    ts, te = ts.reshape(-1).index_select(0, flat), te.reshape(-1).index_select(0, flat)
    flat, ts, te = _split_long(rays_o, rays_d, aabb, flat, keep.shape[1], ts, te, step_size / float(half.min()))
    if grid is not None and len(flat):
        ray = flat // keep.shape[1]
        pts = torch.addcmul(rays_o.index_select(0, ray), rays_d.index_select(0, ray), ((ts + te) * 0.5)[:, None])
        occ = grid.occupied(pts).nonzero().squeeze(1)
        flat, ts, te = flat.index_select(0, occ), ts.index_select(0, occ), te.index_select(0, occ)
    mask: OccupancyMask | None = grid.mask() if grid is not None else None
    fg_i, fg_s, fg_e = march_intervals(rays_o, rays_d, t_fg0, t_fg1, step_size, mask)
    pos_bg, pos_fg, bg_ray = _pack(flat, keep.shape[1], k, fg_i, n)
    total = len(pos_bg) + len(pos_fg)
    ray_i = torch.empty(total, dtype=torch.long, device=dev)
    t_s = torch.empty(total, dtype=rays_o.dtype, device=dev)
    t_e = torch.empty(total, dtype=rays_o.dtype, device=dev)
    for out, bg, fg in ((ray_i, bg_ray, fg_i), (t_s, ts, fg_s), (t_e, te, fg_e)):
        out.index_copy_(0, pos_bg, bg.to(out.dtype))
        out.index_copy_(0, pos_fg, fg.to(out.dtype))
    return ray_i, t_s, t_e
