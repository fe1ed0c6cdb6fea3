"""Plain-PyTorch reference of volume compositing over packed samples (nerfacc layout).

Samples of all rays are concatenated; ``ray_indices[i]`` names the ray of sample ``i`` and is sorted
non-decreasing. Autograd provides the backward.
"""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = ["composite_weights_ref", "composite_ref", "check_packed", "exclusive_optical_depth"]


def check_packed(sigmas: Tensor, t_starts: Tensor, t_ends: Tensor, ray_indices: Tensor) -> None:
    """Raise ``ValueError`` unless the packed sample tensors have matching ``[S]`` shapes."""
    s = sigmas.shape[0]
    for name, v in (("sigmas", sigmas), ("t_starts", t_starts), ("t_ends", t_ends),
                    ("ray_indices", ray_indices)):
        if v.dim() != 1 or v.shape[0] != s:
            raise ValueError(f"{name} must be [S] with S={s}, got {tuple(v.shape)}")


def composite_weights_ref(
    sigmas: Tensor, t_starts: Tensor, t_ends: Tensor, ray_indices: Tensor, n_rays: int
) -> Tensor:
    """Volume-rendering weights ``w_i = T_i * alpha_i`` of packed samples.

    Args:
        sigmas: ``[S]`` densities (>= 0).
        t_starts, t_ends: ``[S]`` sample intervals along each ray (no gradient).
        ray_indices: ``[S]`` int64 ray of each sample, sorted non-decreasing, in ``[0, n_rays)``.
        n_rays: number of rays ``R``.

    Returns:
        ``[S]`` weights, ``alpha_i = 1 - exp(-sigma_i * delta_i)``,
        ``T_i = exp(-sum_{j < i, same ray} sigma_j * delta_j)``. Differentiable w.r.t. ``sigmas``.
    """
    check_packed(sigmas, t_starts, t_ends, ray_indices)
    s = sigmas.shape[0]
    if s == 0:
        return sigmas * 0.0
    tau = sigmas * (t_ends - t_starts).detach()  # optical depth of each sample
    return torch.exp(-exclusive_optical_depth(tau, ray_indices, n_rays)) * (1.0 - torch.exp(-tau))


def exclusive_optical_depth(tau: Tensor, ray_indices: Tensor, n_rays: int) -> Tensor:
    """Per packed sample, the optical depth of the samples before it on its ray: [S] from tau [S]
    (sigma * delta) and sorted ray_indices [S]. -log of the transmittance reaching the sample."""
    s = tau.shape[0]
    if s == 0:
        return tau * 0.0
    ray_indices = ray_indices.long()
    counts = torch.bincount(ray_indices, minlength=n_rays)
    starts = torch.cumsum(counts, 0) - counts
    pos = torch.arange(s, device=tau.device) - starts[ray_indices]
    # Scatter into a dense [R, M] layout so the segmented cumsum never mixes rays (and keeps
    # float32 precision that a global cumsum minus offsets would lose).
    dense = tau.new_zeros(n_rays, int(counts.max()))
    dense = dense.index_put((ray_indices, pos), tau)
    excl = torch.cat([dense.new_zeros(n_rays, 1), torch.cumsum(dense, dim=1)[:, :-1]], dim=1)
    return excl[ray_indices, pos]


def composite_ref(
    sigmas: Tensor,
    rgbs: Tensor,
    t_starts: Tensor,
    t_ends: Tensor,
    ray_indices: Tensor,
    n_rays: int,
) -> tuple[Tensor, Tensor, Tensor]:
    """Composite packed samples into per-ray colour, opacity and depth.

    Args:
        sigmas: ``[S]`` densities; rgbs: ``[S, 3]`` colours.
        t_starts, t_ends: ``[S]`` intervals along the unit-length ray (no gradient).
        ray_indices: ``[S]`` int64, sorted non-decreasing. n_rays: ``R``.

    Returns:
        ``rgb [R, 3] = sum w_i c_i``, ``opacity [R] = sum w_i``,
        ``depth [R] = sum w_i (t_start_i + t_end_i) / 2``; rays without samples give zeros.
        Differentiable w.r.t. ``sigmas`` and ``rgbs``.
    """
    if rgbs.dim() != 2 or rgbs.shape != (sigmas.shape[0], 3):
        raise ValueError(f"rgbs must be [S, 3] with S={sigmas.shape[0]}, got {tuple(rgbs.shape)}")
    w = composite_weights_ref(sigmas, t_starts, t_ends, ray_indices, n_rays)
    idx = ray_indices.long()
    mid = (0.5 * (t_starts + t_ends)).detach()
    rgb = rgbs.new_zeros(n_rays, 3).index_add(0, idx, w[:, None] * rgbs)
    opacity = w.new_zeros(n_rays).index_add(0, idx, w)
    depth = w.new_zeros(n_rays).index_add(0, idx, w * mid)
    return rgb, opacity, depth
