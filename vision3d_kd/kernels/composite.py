"""Volume compositing of packed samples with a fused C++/OpenMP forward and analytic backward.

Same maths as :mod:`vision3d_kd.kernels.composite_ref`; rays are processed in parallel, each by one
thread, so no atomics are needed. Backward for sample ``k`` of a ray, with ``tau_i = sigma_i *
delta_i``, per-sample loss slope ``v_i = g_rgb . c_i + g_opacity + g_depth * mid_i`` and
``T_{k+1} = T_k (1 - alpha_k)``: ``dL/dtau_k = v_k T_{k+1} - sum_{i>k} v_i w_i``.
"""

from __future__ import annotations

from functools import partial

import torch
from torch import Tensor

from .composite_ref import check_packed, composite_ref, composite_weights_ref
from .dispatch import run_tuned, use_fused

__all__ = ["composite", "composite_weights"]


class _Composite(torch.autograd.Function):
    """Autograd wrapper; gradients w.r.t. ``sigmas`` and ``rgbs``."""

    @staticmethod
    def forward(ctx, ext, sigmas, rgbs, t_starts, t_ends, ray_indices, n_rays):  # type: ignore[override]
        s = sigmas.shape[0]
        offsets = torch.empty(n_rays + 1, dtype=torch.int64)
        rgb = sigmas.new_empty(n_rays, 3)
        opacity = sigmas.new_empty(n_rays)
        depth = sigmas.new_empty(n_rays)

        def call(nt: int) -> int:
            ext.composite_offsets(ray_indices.data_ptr(), s, n_rays, offsets.data_ptr(), nt)
            return ext.composite_forward(
                sigmas.data_ptr(), rgbs.data_ptr(), t_starts.data_ptr(), t_ends.data_ptr(), ray_indices.data_ptr(),
                s, offsets.data_ptr(), n_rays, rgb.data_ptr(), opacity.data_ptr(), depth.data_ptr(), nt,
            )

        if run_tuned("composite_fwd", s, 1 << 17, call):
            raise ValueError("ray_indices must be sorted non-decreasing and lie in [0, n_rays)")
        ctx.ext = ext
        ctx.save_for_backward(sigmas, rgbs, t_starts, t_ends, offsets)
        return rgb, opacity, depth

    @staticmethod
    def backward(ctx, g_rgb, g_opacity, g_depth):  # type: ignore[override]
        sigmas, rgbs, t_starts, t_ends, offsets = ctx.saved_tensors
        n_rays = offsets.shape[0] - 1
        grads = []
        for g, shape in ((g_rgb, (n_rays, 3)), (g_opacity, (n_rays,)), (g_depth, (n_rays,))):
            grads.append(sigmas.new_zeros(shape) if g is None else g.contiguous().to(torch.float32))
        g_sigmas = torch.empty_like(sigmas)
        g_rgbs = torch.empty_like(rgbs)
        call = partial(
            ctx.ext.composite_backward,
            *(g.data_ptr() for g in grads),
            sigmas.data_ptr(), rgbs.data_ptr(), t_starts.data_ptr(), t_ends.data_ptr(), offsets.data_ptr(),
            n_rays, g_sigmas.data_ptr(), g_rgbs.data_ptr(),
        )
        run_tuned("composite_bwd", sigmas.shape[0], 1 << 17, call)
        return (
            None,
            g_sigmas if ctx.needs_input_grad[1] else None,
            g_rgbs if ctx.needs_input_grad[2] else None,
            None,
            None,
            None,
            None,
        )


def composite(
    sigmas: Tensor,
    rgbs: Tensor,
    t_starts: Tensor,
    t_ends: Tensor,
    ray_indices: Tensor,
    n_rays: int,
) -> tuple[Tensor, Tensor, Tensor]:
    """Composite packed samples (nerfacc layout) into per-ray colour, opacity and depth.

    Args:
        sigmas: ``[S]`` densities (>= 0); rgbs: ``[S, 3]`` colours.
        t_starts, t_ends: ``[S]`` sample intervals along the unit-length ray (no gradient).
        ray_indices: ``[S]`` int64 ray of each sample, sorted non-decreasing, in ``[0, n_rays)``.
        n_rays: number of rays ``R``.

    Returns:
        ``(rgb [R, 3], opacity [R], depth [R])`` with ``w_i = T_i (1 - exp(-sigma_i delta_i))``,
        ``rgb = sum w_i c_i``, ``opacity = sum w_i``, ``depth = sum w_i (t_start_i + t_end_i) / 2``.
        Rays without samples give zeros. Differentiable w.r.t. ``sigmas`` and ``rgbs``.
    """
    check_packed(sigmas, t_starts, t_ends, ray_indices)
    if rgbs.dim() != 2 or rgbs.shape != (sigmas.shape[0], 3):
        raise ValueError(f"rgbs must be [S, 3] with S={sigmas.shape[0]}, got {tuple(rgbs.shape)}")
    ext = use_fused("composite", sigmas, rgbs, t_starts, t_ends)
    if ext is None or ray_indices.device.type != "cpu":
        return composite_ref(sigmas, rgbs, t_starts, t_ends, ray_indices, n_rays)
    return _Composite.apply(
        ext,
        sigmas.contiguous(),
        rgbs.contiguous(),
        t_starts.detach().contiguous(),
        t_ends.detach().contiguous(),
        ray_indices.detach().to(torch.int64).contiguous(),
        int(n_rays),
    )


def composite_weights(
    sigmas: Tensor, t_starts: Tensor, t_ends: Tensor, ray_indices: Tensor, n_rays: int
) -> Tensor:
    """Per-sample weights ``[S]``; see :func:`vision3d_kd.kernels.composite_ref.composite_weights_ref`."""
    return composite_weights_ref(sigmas, t_starts, t_ends, ray_indices, n_rays)
