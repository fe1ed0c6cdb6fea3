"""PVD-AL hard-example mining at three levels (camera, ray, sample), all gradient-free.

- cameras: the worst virtual cameras by batch PSNR against the teacher are kept in a pool; a share of
  the next steps' cameras is drawn from it, jittered in elevation/azimuth;
- rays: the worst rays of a step by colour (or per-ray distillation) error are re-mixed into the next batch;
- samples (`convert.al_samples`): "paper" (PVD-AL's rule) keeps the per-sample losses only on each ray's
  heaviest 30 % of samples, on rays whose weights sum to at least 0.5, the union of the samples chosen by
  the teacher's and by the student's weights; "boost" (this project's first rule) keeps every sample and
  gives the `top_samples` heaviest teacher samples of each ray extra weight.
"""

from __future__ import annotations

import torch
from torch import Tensor

from ..cameras import Cameras, RandomCameraSampler

__all__ = ["HardExampleMiner", "top_sample_mask", "top_share_mask", "per_camera_psnr"]


def _ranks(weights: Tensor, ray_i: Tensor, n_rays: int) -> tuple[Tensor, Tensor]:
    """Packed samples [S] (ray_i sorted) -> (each sample's rank [S] within its ray by weight, 0: heaviest;
    samples per ray [n_rays])."""
    by_weight = torch.argsort(weights, descending=True, stable=True)
    order = by_weight[torch.argsort(ray_i[by_weight], stable=True)]  # per ray, heaviest first
    counts = torch.bincount(ray_i, minlength=n_rays)
    first = torch.cumsum(counts, 0) - counts
    rank = torch.empty_like(ray_i)
    rank[order] = torch.arange(order.numel(), device=weights.device) - first[ray_i[order]]
    return rank, counts


def top_sample_mask(weights: Tensor, ray_i: Tensor, n_rays: int, k: int) -> Tensor:
    """Packed samples [S] (ray_i sorted) -> bool [S]: the k samples of each ray with the largest weight."""
    return _ranks(weights, ray_i, n_rays)[0] < k


def top_share_mask(weights: Tensor, ray_i: Tensor, n_rays: int, share: float, min_ray_weight: float) -> Tensor:
    """Packed samples [S] (ray_i sorted) -> bool [S]: on rays whose weights sum to >= min_ray_weight, the
    floor(share * n) + 1 heaviest of the ray's n samples (PVD-AL's point-level rule); none elsewhere."""
    rank, counts = _ranks(weights, ray_i, n_rays)
    keep = torch.floor(share * counts.float()).long() + 1
    total = torch.zeros(n_rays, dtype=weights.dtype, device=weights.device).index_add_(0, ray_i, weights)
    return (rank < keep[ray_i]) & (total[ray_i] >= min_ray_weight)


def per_camera_psnr(err: Tensor, cam_of_ray: Tensor, n_cams: int) -> Tensor:
    """Per-ray squared colour errors [R] and their camera [R] -> PSNR per camera [n_cams] (inf if no rays)."""
    total = torch.zeros(n_cams).index_add_(0, cam_of_ray, err.detach().float().cpu())
    count = torch.bincount(cam_of_ray, minlength=n_cams).clamp_min(1)
    return -10 * torch.log10((total / count).clamp_min(1e-10))


class HardExampleMiner:
    """Keeps the hard cameras and rays between steps (see the module docstring)."""

    def __init__(self, sampler: RandomCameraSampler, pool: int, camera_fraction: float, jitter_deg: float,
                 ray_fraction: float) -> None:
        self.sampler, self.pool_size = sampler, pool
        self.camera_fraction, self.jitter_deg, self.ray_fraction = camera_fraction, jitter_deg, ray_fraction
        self.pool: dict[str, Tensor] | None = None  # camera params + "psnr"
        self.picked = torch.zeros(0, dtype=torch.long)  # pool entries re-drawn as the last cameras' first ones
        self.hard_rays: tuple[Tensor, Tensor] | None = None

    def cameras(self, n: int, gen: torch.Generator) -> tuple[Cameras, dict[str, Tensor]]:
        """n cameras: a camera_fraction share re-drawn (jittered) from the hard pool, the rest random."""
        params = self.sampler.sample_params(n, gen)
        n_hard = min(int(round(self.camera_fraction * n)), 0 if self.pool is None else len(self.pool["psnr"]))
        if n_hard:
            pick = torch.randperm(len(self.pool["psnr"]), generator=gen)[:n_hard]
            for key in params:
                params[key][:n_hard] = self.pool[key][pick]
            noise = (torch.rand(2, n_hard, generator=gen) * 2 - 1) * self.jitter_deg
            lo, hi = self.sampler.elevation_deg
            params["elevation_deg"][:n_hard] = (params["elevation_deg"][:n_hard] + noise[0]).clamp(lo, hi)
            params["azimuth_deg"][:n_hard] += noise[1]
        self.picked = pick if n_hard else torch.zeros(0, dtype=torch.long)
        return self.sampler.cameras(params), params

    def update_cameras(self, params: dict[str, Tensor], psnr: Tensor) -> None:
        """Merge this step's cameras (with their batch PSNR) into the pool; keep the worst `pool` ones.

        A re-drawn camera replaces its pool entry (its old PSNR is stale: the student has trained since),
        so a camera stays in the pool only while it stays hard."""
        merged = {k: v.clone() for k, v in params.items()}
        merged["psnr"] = psnr.clone()
        if self.pool is not None:
            stale = torch.zeros(len(self.pool["psnr"]), dtype=torch.bool)
            stale[self.picked] = True
            merged = {k: torch.cat([self.pool[k][~stale], merged[k]]) for k in merged}
        keep = torch.argsort(merged["psnr"])[: self.pool_size]
        self.pool = {k: v[keep] for k, v in merged.items()}

    def take_rays(self) -> tuple[Tensor, Tensor] | None:
        """The hard rays (rays_o, rays_d) saved by the last `update_rays`, once."""
        rays, self.hard_rays = self.hard_rays, None
        return rays

    def update_rays(self, rays_o: Tensor, rays_d: Tensor, err: Tensor, n_batch: int) -> None:
        """Remember the worst ray_fraction * n_batch rays of this step by per-ray error err [R]."""
        k = min(int(self.ray_fraction * n_batch), err.numel())
        if k > 0:
            idx = torch.topk(err.detach(), k).indices
            self.hard_rays = (rays_o[idx].detach(), rays_d[idx].detach())
