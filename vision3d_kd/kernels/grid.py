"""Channels-last trilinear / bilinear / linear interpolation with fused C++/OpenMP kernels.

Same conventions as :mod:`vision3d_kd.kernels.grid_ref` (``align_corners=True``, border padding).
When the grid needs a gradient, the forward also counting-sorts the samples by grid row (reused by
the next call with the same coordinate tensor and grid layout, e.g. density and feature grids);
the backward then scatters row range by row range, each owned by one thread (no atomics, and
deterministic: see ``csrc/grid.cpp``), into a pooled buffer (:mod:`vision3d_kd.kernels.pool`).
"""

from __future__ import annotations

import math
import weakref
from functools import partial

import torch
from torch import Tensor

from .dispatch import run_tuned, use_fused
from .grid_ref import sample_lines_ref, sample_planes_ref, sample_volume_ref
from .pool import pooled_empty

__all__ = ["sample_volume", "sample_planes", "sample_lines"]


def _sizes(kind: str, grid: Tensor, coords: Tensor) -> tuple[int, int, int]:
    """``(items, n_keys, coordinate dim)`` of a sampling call."""
    if kind == "volume":
        return coords.shape[0], grid.shape[0] * grid.shape[1], 3
    if kind == "planes":
        return grid.shape[0] * coords.shape[1], grid.shape[0] * grid.shape[1], 2
    return grid.shape[0] * coords.shape[1], grid.shape[0] * grid.shape[1], 1


def _forward(ext, kind: str, grid: Tensor, coords: Tensor, sort: tuple[Tensor, Tensor, Tensor] | None) -> Tensor:
    """Interpolate; with ``sort`` (from :func:`_sort`) the samples are read in grid-row order."""
    gp = grid.data_ptr()
    xp, op = (coords.data_ptr(), 0) if sort is None else (sort[2].data_ptr(), sort[0].data_ptr())
    if kind == "volume":
        out = pooled_empty((coords.shape[0], grid.shape[3]))
        call = partial(ext.volume_forward, gp, *grid.shape, xp, op, coords.shape[0], out.data_ptr())
    elif kind == "planes":
        out = pooled_empty((grid.shape[0], coords.shape[1], grid.shape[3]))
        call = partial(ext.planes_forward, gp, *grid.shape, xp, op, coords.shape[1], out.data_ptr())
    else:
        out = pooled_empty((grid.shape[0], coords.shape[1], grid.shape[2]))
        call = partial(ext.lines_forward, gp, *grid.shape, xp, op, coords.shape[1], out.data_ptr())
    run_tuned(f"{kind}_fwd", _sizes(kind, grid, coords)[0], 1 << 16, call)
    return out


def _sort(ext, kind: str, grid: Tensor, coords: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """Samples sorted by grid row: ``(order [M] int32, starts [K + 1] int64, sorted coords [M, dim])``."""
    n_items, n_keys, dim = _sizes(kind, grid, coords)
    order = torch.empty(n_items, dtype=torch.int32)
    starts = torch.empty(n_keys + 1, dtype=torch.int64)
    sorted_coords = coords.new_empty(n_items, dim)
    args = (order.data_ptr(), starts.data_ptr(), sorted_coords.data_ptr())
    if kind == "volume":
        call = partial(ext.volume_sort, coords.data_ptr(), coords.shape[0], grid.shape[0], grid.shape[1], *args)
    elif kind == "planes":
        call = partial(ext.planes_sort, coords.data_ptr(), grid.shape[0], coords.shape[1], grid.shape[1], *args)
    else:
        call = partial(ext.lines_sort, coords.data_ptr(), grid.shape[0], coords.shape[1], grid.shape[1], *args)
    run_tuned(f"{kind}_sort", n_items, 1 << 18, call)
    return order, starts, sorted_coords


# The last sort: a field often samples several grids at the same points (DVGO: density and
# features), and they share one sort. Keyed by the caller's coordinate tensor (same object, storage,
# layout and version, so in-place edits invalidate it) and the grid's two leading sizes.
_LAST_SORT: dict[str, tuple] = {}


def _sort_key(kind: str, grid: Tensor, source: Tensor) -> tuple:
    """Identity of a sort: ``(layout tuple, weak reference to the caller's coordinate tensor)``."""
    layout = (kind, tuple(grid.shape[:2]), source.data_ptr(), source._version, tuple(source.shape), source.stride())
    return layout, weakref.ref(source)


def _cached_sort(ext, kind: str, grid: Tensor, coords: Tensor, key: tuple) -> tuple[Tensor, Tensor, Tensor]:
    last = _LAST_SORT.get("entry")
    if last is not None and last[0][0] == key[0] and last[0][1]() is not None and last[0][1]() is key[1]():
        return last[1]
    value = _sort(ext, kind, grid, coords)
    _LAST_SORT["entry"] = (key, value)
    return value


def _backward(
    ext,
    kind: str,
    grad: Tensor,
    n: int,
    order: Tensor,
    starts: Tensor,
    coords: Tensor,
    shape: tuple[int, ...],
) -> Tensor:
    """Scatter ``grad`` of the ``n`` outputs (per plane) into a new gradient of the grid (``shape``)."""
    g = grad.contiguous().to(torch.float32)
    out = pooled_empty(shape)  # every cell is written by the kernel
    args = (g.data_ptr(), coords.data_ptr(), order.data_ptr(), starts.data_ptr())
    if kind == "volume":
        call = partial(ext.volume_backward, *args, *shape, out.data_ptr())
    elif kind == "planes":
        call = partial(ext.planes_backward, *args, shape[0], n, *shape[1:], out.data_ptr())
    else:
        call = partial(ext.lines_backward, *args, shape[0], n, *shape[1:], out.data_ptr())
    run_tuned(f"{kind}_bwd", order.shape[0] + math.prod(shape) // 16, 1 << 15, call)
    return out


class _Sample(torch.autograd.Function):
    """Autograd wrapper: ``kind`` in {volume, planes, lines}; gradient w.r.t. the grid only."""

    @staticmethod
    def forward(ctx, ext, kind: str, grid: Tensor, coords: Tensor, key: tuple) -> Tensor:  # type: ignore[override]
        ctx.ext, ctx.kind, ctx.grid_shape = ext, kind, tuple(grid.shape)
        ctx.n = coords.shape[0] if kind == "volume" else coords.shape[1]
        sort = None
        if ctx.needs_input_grad[2]:  # the backward needs the sort; the forward then uses it too
            sort = _cached_sort(ext, kind, grid, coords, key)
            ctx.save_for_backward(*sort)
        return _forward(ext, kind, grid, coords, sort)

    @staticmethod
    def backward(ctx, grad_out: Tensor):  # type: ignore[override]
        order, starts, sorted_coords = ctx.saved_tensors
        grad = _backward(ctx.ext, ctx.kind, grad_out, ctx.n, order, starts, sorted_coords, ctx.grid_shape)
        return None, None, grad, None, None


def _run(kind: str, grid: Tensor, coords: Tensor) -> Tensor | None:
    ext = use_fused("grid", grid, coords)
    if ext is None or grid.numel() == 0 or coords.numel() >= 2**31:
        return None
    key = _sort_key(kind, grid, coords)
    return _Sample.apply(ext, kind, grid.contiguous(), coords.detach().contiguous(), key)


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
