"""Distortion regulariser of Mip-NeRF 360 (Barron et al. 2022, eq. 15) on packed samples.

For one ray with sample intervals [t_s_i, t_e_i], midpoints m_i and weights w_i it is

    L = sum_i sum_j w_i w_j |m_i - m_j|  +  1/3 sum_i w_i^2 (t_e_i - t_s_i)

small when the ray's weight sits in one short interval (a surface) and large when it is spread
along the ray (fog, semi-transparent shells). Distances are in scene units, the same as `t`.
The double sum is evaluated in O(S) with per-ray prefix sums over the (sorted) samples:
sum_{i,j} w_i w_j |m_i - m_j| = 2 sum_i w_i (m_i W_<i - (wm)_<i).
"""

from __future__ import annotations

from torch import Tensor

from ..kernels.composite_ref import check_packed, composite_weights_ref, exclusive_optical_depth

__all__ = ["distortion_loss", "distortion_loss_dense"]


def distortion_loss(
    sigmas: Tensor, t_starts: Tensor, t_ends: Tensor, ray_indices: Tensor, n_rays: int
) -> Tensor:
    """Mean over the n_rays rays of the distortion loss (scene units) of packed samples.

    sigmas [S] (1/scene-unit, differentiable), t_starts/t_ends [S] (sorted within each ray),
    ray_indices [S] int64 sorted non-decreasing. Rays without samples contribute 0."""
    check_packed(sigmas, t_starts, t_ends, ray_indices)
    if sigmas.shape[0] == 0:
        return sigmas.sum() * 0.0
    w = composite_weights_ref(sigmas, t_starts, t_ends, ray_indices, n_rays)
    mid = (0.5 * (t_starts + t_ends)).detach()
    delta = (t_ends - t_starts).detach()
    w_before = exclusive_optical_depth(w, ray_indices, n_rays)  # exclusive per-ray prefix sums
    wm_before = exclusive_optical_depth(w * mid, ray_indices, n_rays)
    inter = 2.0 * (w * (mid * w_before - wm_before)).sum()
    intra = (w * w * delta).sum() / 3.0
    return (inter + intra) / n_rays


def distortion_loss_dense(weights: Tensor, t_starts: Tensor, t_ends: Tensor) -> Tensor:
    """The same loss for one ray from its weights [N] and intervals [N] by the literal O(N^2) double
    sum; the test oracle of `distortion_loss`."""
    mid = 0.5 * (t_starts + t_ends)
    inter = (weights[:, None] * weights[None, :] * (mid[:, None] - mid[None, :]).abs()).sum()
    return inter + (weights * weights * (t_ends - t_starts)).sum() / 3.0
