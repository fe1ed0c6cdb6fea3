"""Channels-last trilinear / bilinear / linear interpolation with fused C++/OpenMP kernels.

Same conventions as :mod:`vision3d_kd.kernels.grid_ref` (``align_corners=True``, border padding).
The backward scatters into the grid without atomics: each thread owns a contiguous range of
outermost slices (D for volumes, plane rows for planes, line cells for lines) balanced by a
histogram of the samples, and visits the samples in order, so the result is deterministic.
"""

from __future__ import annotations

import torch
from torch import Tensor

from .dispatch import n_threads, use_fused
from .grid_ref import sample_lines_ref, sample_planes_ref, sample_volume_ref

__all__ = ["sample_volume", "sample_planes", "sample_lines"]


def _forward(ext, kind: str, grid: Tensor, coords: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """Sort the samples by grid row, then interpolate: ``(out, order [M] int32, starts [K+1] int64)``."""
    nt = n_threads()
    if kind == "volume":
        d, h, w, c = grid.shape
        n = coords.shape[0]
        n_items, n_keys = n, d * h
    elif kind == "planes":
        p, h, w, c = grid.shape
        n = coords.shape[1]
        n_items, n_keys = p * n, p * h
    else:
        p, length, c = grid.shape
        n = coords.shape[1]
        n_items, n_keys = p * n, p * length
    order = torch.empty(n_items, dtype=torch.int32)
    starts = torch.empty(n_keys + 1, dtype=torch.int64)
    out = grid.new_empty(n, c) if kind == "volume" else grid.new_empty(p, n, c)
    xp, op, sp = coords.data_ptr(), order.data_ptr(), starts.data_ptr()
    if kind == "volume":
        ext.volume_sort(xp, n, d, h, op, sp, nt)
        ext.volume_forward(grid.data_ptr(), d, h, w, c, xp, op, n, out.data_ptr(), nt)
    elif kind == "planes":
        ext.planes_sort(xp, p, n, h, op, sp, nt)
        ext.planes_forward(grid.data_ptr(), p, h, w, c, xp, op, n, out.data_ptr(), nt)
    else:
        ext.lines_sort(xp, p, n, length, op, sp, nt)
        ext.lines_forward(grid.data_ptr(), p, length, c, xp, op, n, out.data_ptr(), nt)
    return out, order, starts


def _backward(
    ext, kind: str, grad: Tensor, coords: Tensor, order: Tensor, starts: Tensor, shape: tuple[int, ...]
) -> Tensor:
    """Scatter ``grad [*, C]`` of the outputs into a new gradient of the grid (``shape``)."""
    nt = n_threads()
    g = grad.contiguous().to(torch.float32)
    out = g.new_empty(shape)  # every cell is written by the kernel
    args = (g.data_ptr(), coords.data_ptr(), order.data_ptr(), starts.data_ptr())
    if kind == "volume":
        d, h, w, c = shape
        ext.volume_backward(*args, coords.shape[0], d, h, w, c, out.data_ptr(), nt)
    elif kind == "planes":
        p, h, w, c = shape
        ext.planes_backward(*args, p, coords.shape[1], h, w, c, out.data_ptr(), nt)
    else:
        p, length, c = shape
        ext.lines_backward(*args, p, coords.shape[1], length, c, out.data_ptr(), nt)
    return out


class _Sample(torch.autograd.Function):
    """Autograd wrapper: ``kind`` in {volume, planes, lines}; gradient w.r.t. the grid only."""

    @staticmethod
    def forward(ctx, ext, kind: str, grid: Tensor, coords: Tensor) -> Tensor:  # type: ignore[override]
        out, order, starts = _forward(ext, kind, grid, coords)
        ctx.ext, ctx.kind, ctx.grid_shape = ext, kind, tuple(grid.shape)
        ctx.save_for_backward(coords, order, starts)
        return out

    @staticmethod
    def backward(ctx, grad_out: Tensor):  # type: ignore[override]
        coords, order, starts = ctx.saved_tensors
        grad_grid = None
        if ctx.needs_input_grad[2]:
            grad_grid = _backward(ctx.ext, ctx.kind, grad_out, coords, order, starts, ctx.grid_shape)
        return None, None, grad_grid, None


def _run(kind: str, grid: Tensor, coords: Tensor) -> Tensor | None:
    ext = use_fused("grid", grid, coords)
    if ext is None or grid.numel() == 0 or coords.numel() >= 2**31:
        return None
    return _Sample.apply(ext, kind, grid.contiguous(), coords.detach().contiguous())


def sample_volume(grid: Tensor, x: Tensor) -> Tensor:
    """Trilinear lookup ``grid: [D, H, W, C]`` at ``x: [N, 3]`` in ``[-1, 1]`` -> ``[N, C]``.

    ``x[:, 0]`` indexes W, ``x[:, 1]`` H, ``x[:, 2]`` D; equals ``F.grid_sample`` with
    ``align_corners=True, padding_mode='border'``. Gradient w.r.t. ``grid`` only (``x`` gets none).
    """
    if grid.dim() != 4 or x.dim() != 2 or x.shape[1] != 3:
        raise ValueError(f"need grid [D,H,W,C] and x [N,3], got {tuple(grid.shape)}, {tuple(x.shape)}")
    out = _run("volume", grid, x)
    return sample_volume_ref(grid, x) if out is None else out


def sample_planes(planes: Tensor, uv: Tensor) -> Tensor:
    """Bilinear lookup ``planes: [P, H, W, C]`` at ``uv: [P, N, 2]`` in ``[-1, 1]`` -> ``[P, N, C]``.

    ``uv[..., 0]`` indexes W, ``uv[..., 1]`` H; ``align_corners=True``, border padding.
    Gradient w.r.t. ``planes`` only (``uv`` gets none).
    """
    if planes.dim() != 4 or uv.dim() != 3 or uv.shape[2] != 2 or uv.shape[0] != planes.shape[0]:
        raise ValueError(f"need planes [P,H,W,C], uv [P,N,2]; got {tuple(planes.shape)}, {tuple(uv.shape)}")
    out = _run("planes", planes, uv)
    return sample_planes_ref(planes, uv) if out is None else out


def sample_lines(lines: Tensor, t: Tensor) -> Tensor:
    """Linear lookup ``lines: [P, L, C]`` at ``t: [P, N]`` in ``[-1, 1]`` -> ``[P, N, C]``.

    ``-1`` is entry 0 and ``+1`` entry ``L - 1`` (``align_corners=True``), border padding.
    Gradient w.r.t. ``lines`` only (``t`` gets none).
    """
    if lines.dim() != 3 or t.dim() != 2 or t.shape[0] != lines.shape[0]:
        raise ValueError(f"need lines [P,L,C], t [P,N]; got {tuple(lines.shape)}, {tuple(t.shape)}")
    out = _run("lines", lines, t)
    return sample_lines_ref(lines, t) if out is None else out
