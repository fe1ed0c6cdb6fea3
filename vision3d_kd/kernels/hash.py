"""Multiresolution hash encoding (Instant-NGP) with a fused C++/OpenMP forward and backward.

Same maths and conventions as :func:`vision3d_kd.kernels.hash_ref.hash_encode_ref`. The forward is
parallel over blocks of points; the backward to the table is parallel over levels (each level's table
block is owned by one thread), so it needs no atomics and is deterministic. The backward to the points
(used when they carry a gradient, e.g. for camera-pose refinement) is parallel over points.
"""

from __future__ import annotations

import torch
from torch import Tensor

from .dispatch import run_tuned, use_fused
from .hash_ref import hash_encode_ref
from .pool import pooled_empty

__all__ = ["hash_encode"]


class _HashEncode(torch.autograd.Function):
    """Autograd wrapper of the fused kernel; gradients w.r.t. ``table`` and (when it requires one) ``x``."""

    @staticmethod
    def forward(ctx, ext, x: Tensor, table: Tensor, resolutions: Tensor,  # type: ignore[override]
                tail: Tensor | None, active: int) -> Tensor:
        n_levels, table_size, n_feat = table.shape
        n, width = x.shape[0], n_levels * n_feat
        out = pooled_empty((n, width + (0 if tail is None else tail.shape[-1])))
        args = (x.data_ptr(), table.data_ptr(), resolutions.data_ptr(), n, active, table_size, n_feat, out.data_ptr(),
                out.shape[1])
        run_tuned("hash_fwd", n * n_levels, 1 << 17, lambda nt: ext.hash_forward(*args, nt))
        out[:, active * n_feat:width] = 0.0  # levels past `active` are not looked up
        if tail is not None:
            out[:, width:] = tail
        ctx.ext, ctx.active = ext, active
        ctx.table_shape = (n_levels, table_size, n_feat)
        ctx.save_for_backward(x, table, resolutions)
        return out

    @staticmethod
    def backward(ctx, grad_out: Tensor):  # type: ignore[override]
        x, table, resolutions = ctx.saved_tensors
        grad_x = grad_table = None
        n_levels, table_size, n_feat = ctx.table_shape
        active = ctx.active  # the kernels see the first `active` levels; the others' table gradient is zero
        g = grad_out[:, :active * n_feat].to(torch.float32)
        if g.stride(1) != 1 or g.stride(0) < g.shape[1]:  # rows may lie apart (a slice of a wider gradient), no more
            g = g.contiguous()
        n = x.shape[0]
        if ctx.needs_input_grad[1]:
            grad_x = pooled_empty((n, 3))  # fully written by the kernel
            args_x = (g.data_ptr(), g.stride(0), x.data_ptr(), table.data_ptr(), resolutions.data_ptr(), n, active,
                      table_size, n_feat, grad_x.data_ptr())
            run_tuned("hash_bwd_x", n * n_levels, 1 << 17, lambda nt: ctx.ext.hash_backward_x(*args_x, nt))
        if ctx.needs_input_grad[2]:
            scratch = pooled_empty((active, n, n_feat))  # level-major copy of grad_out
            grad_table = pooled_empty((n_levels, table_size, n_feat))  # active levels written by the kernel
            grad_table[active:] = 0.0
            args = (g.data_ptr(), g.stride(0), x.data_ptr(), resolutions.data_ptr(), n, active, table_size, n_feat,
                    scratch.data_ptr(), grad_table.data_ptr())
            work = n * n_levels + grad_table.numel() // 8
            run_tuned("hash_bwd", work, 1 << 15, lambda nt: ctx.ext.hash_backward(*args, nt))
        return None, grad_x, grad_table, None, None, None


def hash_encode(x: Tensor, table: Tensor, resolutions: Tensor, tail: Tensor | None = None,
                levels: int | None = None) -> Tensor:
    """Multiresolution hash encoding, optionally followed by constant columns.

    Args:
        x: ``[N, 3]`` points in ``[0, 1]^3`` (outside points extrapolate from the border cell).
            Differentiable (the trilinear weights; the cell index is piecewise constant).
        table: ``[L, T, F]`` float feature table.
        resolutions: ``[L]`` int32 CPU tensor, cells per axis of each level.
        tail: ``[C]`` or ``[N, C]`` values (no gradient) for ``C`` columns after the features, written into the
            same output (what ``torch.cat([features, tail], 1)`` gives, without the copy of the features).
        levels: only the first ``levels`` levels are looked up; the others' columns are 0 and their table rows
            get a zero gradient (a coarse-to-fine schedule's locked levels, without their cost). None: all.

    Returns:
        ``[N, L * F (+ C)]`` level-major features (columns ``l*F .. l*F+F-1`` are level ``l``),
        differentiable w.r.t. ``table`` and ``x``. Level ``l`` is dense (``cx + cy*(R+1) + cz*(R+1)^2``) when
        ``(R+1)^3 <= T``, else hashed ``(cx ^ cy*2654435761 ^ cz*805459861) mod T`` in uint32.
        Uses the fused kernel for float32 CPU tensors, otherwise :func:`hash_encode_ref`.
    """
    if x.dim() != 2 or x.shape[1] != 3 or table.dim() != 3 or resolutions.numel() != table.shape[0]:
        return hash_encode_ref(x, table, resolutions)  # raises the shape error
    if tail is not None:
        tail = tail.detach().to(dtype=table.dtype, device=x.device).expand(x.shape[0], -1)
    active = table.shape[0] if levels is None else max(0, min(int(levels), table.shape[0]))
    ext = use_fused("hash", x, table)
    if ext is None or table.shape[2] > 64 or table.shape[1] > 2**32:
        out = hash_encode_ref(x, table, resolutions)
        keep = active * table.shape[2]
        if keep < out.shape[1]:
            out = torch.cat([out[:, :keep], out.new_zeros(len(out), out.shape[1] - keep)], dim=1)
        return out if tail is None else torch.cat([out, tail], dim=1)
    res = resolutions.detach().to(device="cpu", dtype=torch.int32).contiguous()
    if res.numel() and int(res.min()) < 1:
        raise ValueError("resolutions must be >= 1")
    return _HashEncode.apply(ext, x.contiguous(), table.contiguous(), res, tail, active)
