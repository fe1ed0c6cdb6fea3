"""Fused C++/OpenMP tile rasterizer for projected Gaussians, forward and backward.

Same maths and outputs as :func:`vision3d_kd.kernels.splat_ref.rasterize_ref` (the test oracle); tile
binning is shared (``tile_bins``). Gradients flow to means2d, conics, colours, opacities and depths;
per-Gaussian gradients are sums of per-(tile, Gaussian) rows, so they do not depend on thread count.
"""

from __future__ import annotations

import torch
from torch import Tensor

from .dispatch import run_tuned, use_fused
from .splat_ref import TILE, Projection, finish_image, rasterize_ref, tile_bins

__all__ = ["rasterize"]


class _Rasterize(torch.autograd.Function):
    @staticmethod
    def forward(ctx, ext, offsets, ids, width, height, bg, m2d, con, col, opa, dep):  # type: ignore[override]
        ntx, nty = -(-width // TILE), -(-height // TILE)
        rgb = torch.empty(height, width, 3)
        alpha = torch.empty(height, width)
        acc = torch.empty(height, width)
        last = torch.empty(height, width, dtype=torch.int32)
        geo = (m2d.data_ptr(), con.data_ptr(), col.data_ptr(), opa.data_ptr(), dep.data_ptr(),
               offsets.data_ptr(), ids.data_ptr(), ntx, nty, width, height, bg.data_ptr())
        work = max(1, ids.numel()) * TILE * TILE // 8
        run_tuned("splat_fwd", work, 1 << 16, lambda nt: ext.splat_forward(
            *geo, rgb.data_ptr(), alpha.data_ptr(), acc.data_ptr(), last.data_ptr(), nt))
        ctx.ext, ctx.geo, ctx.n = ext, geo, m2d.shape[0]
        ctx.save_for_backward(offsets, ids, bg, m2d, con, col, opa, dep, alpha, last)
        ctx.mark_non_differentiable(last)
        return rgb, alpha, acc

    @staticmethod
    def backward(ctx, g_rgb, g_alpha, g_acc):  # type: ignore[override]
        offsets, ids, bg, m2d, con, col, opa, dep, alpha, last = ctx.saved_tensors
        g_rgb, g_alpha, g_acc = (
            (g.contiguous().float() if g is not None else torch.zeros(s))
            for g, s in ((g_rgb, alpha.shape + (3,)), (g_alpha, alpha.shape), (g_acc, alpha.shape))
        )
        pair = torch.empty(ids.numel(), 10)
        work = max(1, ids.numel()) * TILE * TILE // 4
        run_tuned("splat_bwd", work, 1 << 16, lambda nt: ctx.ext.splat_backward(
            g_rgb.data_ptr(), g_alpha.data_ptr(), g_acc.data_ptr(), *ctx.geo, alpha.data_ptr(),
            last.data_ptr(), pair.data_ptr(), nt))
        grad = torch.zeros(ctx.n, 10).index_add_(0, ids, pair)
        return (None, None, None, None, None, None,
                grad[:, 0:2], grad[:, 2:5], grad[:, 5:8], grad[:, 8], grad[:, 9])


def rasterize(
    proj: Projection,
    colors: Tensor,
    opacities: Tensor,
    width: int,
    height: int,
    background: Tensor | None = None,
) -> dict[str, Tensor]:
    """Composite projected Gaussians: rgb [H,W,3] (over `background` [3], black if None), opacity [H,W],
    depth [H,W] (expected camera z, world units; 0 where alpha is 0). colors [N,3], opacities [N].
    Fused kernel for float32 CPU tensors, else :func:`rasterize_ref`."""
    ext = use_fused("splat", proj.means2d, proj.conics, colors, opacities)
    if ext is None:
        return rasterize_ref(proj, colors, opacities, width, height, background)
    offsets, ids = tile_bins(proj, width, height)
    bg = torch.zeros(3) if background is None else background.detach().float().reshape(3).contiguous()
    rgb, alpha, acc = _Rasterize.apply(
        ext, offsets, ids, int(width), int(height), bg,
        *(t.contiguous().float() for t in (proj.means2d, proj.conics, colors, opacities, proj.depths)),
    )
    return finish_image(rgb, alpha, acc)
