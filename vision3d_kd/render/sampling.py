"""Samples along rays — the one sampler that rendering, PVD and mesh extraction share.

March uniform steps through the scene box, skipping cells the occupancy grid marks empty, take each
step's midpoint, and (given densities there) keep the samples that are visible: not behind an opaque
surface and not negligibly thin. Fields with scene contraction sample all of space (`contracted.py`).
Rays: origins/directions [R,3] in world units with unit directions, so t is a Euclidean distance along
the ray (scene units). Packed layout as nerfacc's.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

from ..kernels.composite_ref import exclusive_optical_depth
from ..kernels.march import march_rays
from .contracted import march_contracted
from .occupancy import OccupancyGrid

__all__ = ["RaySamples", "sample_along_rays", "ray_jitter", "visible_samples"]


@dataclass
class RaySamples:
    """Packed samples sorted by ray: ray_indices [S] int64, t_starts [S], t_ends [S] (scene units) and the
    world positions of their midpoints, points [S,3]."""

    ray_indices: Tensor
    t_starts: Tensor
    t_ends: Tensor
    points: Tensor

    def __len__(self) -> int:
        return int(self.ray_indices.numel())

    @property
    def deltas(self) -> Tensor:
        """Sample lengths [S] (scene units)."""
        return self.t_ends - self.t_starts

    def select(self, idx: Tensor) -> RaySamples:
        """The samples at indices idx [K] (order kept)."""
        return RaySamples(*(t.index_select(0, idx) for t in (self.ray_indices, self.t_starts, self.t_ends,
                                                             self.points)))


def ray_jitter(n: int, contract: bool, generator: torch.Generator | None, device: torch.device | str = "cpu"
               ) -> Tensor:
    """The uniforms `sample_along_rays(jitter=True)` would draw for n rays from `generator`, drawn now: [n]
    for bounded marching, [n,2] (foreground, shells) for contracted. Data-parallel ranks draw a whole batch's
    and each passes its rows, so the samples do not depend on how the batch is shared out."""
    if not contract:
        return torch.rand(n, generator=generator, device=device)
    return torch.stack([torch.rand(n, generator=generator, device=device) for _ in range(2)], dim=1)


def sample_along_rays(rays_o: Tensor, rays_d: Tensor, aabb: Tensor, step_size: float,
                      grid: OccupancyGrid | None = None, near: float = 0.0, jitter: bool | Tensor = False,
                      generator: torch.Generator | None = None, contract: bool = False,
                      foreground_only: bool = False, clip: Tensor | None = None) -> RaySamples:
    """Steps of `step_size` from max(near, box entry) to the box exit of rays [R,3], kept where `grid` is
    occupied (the grid's own box replaces `aabb` when given); `jitter` shifts each ray's first step by
    U[0, step) (training): True draws from `generator`, a tensor gives the uniforms (`ray_jitter`).

    A contracted grid (or `contract` without a grid: a field with scene contraction) samples all of space
    instead (`contracted.py`): the same steps inside the box `aabb`, now the foreground, and steps uniform
    in contracted radius (disparity) around it out to the far shell. `foreground_only` keeps such rays to
    the box (what mesh extraction wants). A bounded grid with `contract` is a ValueError.

    `clip` [2,3] (world units; LucidDreaming's clipped rays): each ray is marched only between its entry
    into and exit from this box as well (t_min, t_max of the ray–box slab test), so nothing outside it is
    sampled; the occupancy grid still skips its empty cells. Not for contracted fields."""
    if grid is not None:
        if contract and not grid.contract:
            raise ValueError("sample_along_rays: contract=True with a bounded occupancy grid")
        contract = grid.contract
    box = grid.aabb if grid is not None else aabb
    if clip is not None:
        if contract:
            raise ValueError("sample_along_rays: clip with a contracted field")
        clip = clip.to(box)
        box = torch.stack([torch.maximum(box[0], clip[0]), torch.minimum(box[1], clip[1])])
    if contract and not foreground_only:
        ray_i, t_s, t_e = march_contracted(rays_o, rays_d, box, step_size, grid, near, jitter, generator)
    else:
        mask = grid.mask() if grid is not None else None
        ray_i, t_s, t_e = march_rays(rays_o, rays_d, box, step_size, mask, near, jitter, generator)
    mids = ((t_s + t_e) * 0.5)[:, None]
    points = torch.addcmul(rays_o.index_select(0, ray_i), rays_d.index_select(0, ray_i), mids)
    return RaySamples(ray_i, t_s, t_e, points)


def visible_samples(samples: RaySamples, sigma: Tensor, n_rays: int, opacity_min: float | None = None,
                    transmittance_min: float = 1e-4) -> Tensor:
    """Indices [K] of samples with densities sigma [S] (1/scene-unit) whose own opacity exceeds
    `opacity_min` (when given) and whose transmittance before them exceeds `transmittance_min` (what is in front of
    them is not yet opaque)."""
    tau = sigma.reshape(-1) * samples.deltas
    keep = exclusive_optical_depth(tau, samples.ray_indices, n_rays) < -math.log(transmittance_min)
    if opacity_min is not None:
        keep &= tau > -math.log1p(-opacity_min)
    return keep.nonzero().flatten()
