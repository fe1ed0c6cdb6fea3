"""Plain-PyTorch references of channels-last grid interpolation (via ``F.grid_sample``).

All three use ``align_corners=True`` and ``padding_mode='border'``: coordinate ``-1`` is the centre
of the first cell, ``+1`` the centre of the last, and points outside are clamped to the border.
Only the grid receives gradients; the sample coordinates are detached.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = ["sample_volume_ref", "sample_planes_ref", "sample_lines_ref"]

_KW = {"mode": "bilinear", "align_corners": True, "padding_mode": "border"}


def sample_volume_ref(grid: Tensor, x: Tensor) -> Tensor:
    """Trilinear lookup in a channels-last volume.

    Args:
        grid: ``[D, H, W, C]`` values.
        x: ``[N, 3]`` coordinates in ``[-1, 1]``; ``x[:, 0]`` indexes W, ``x[:, 1]`` H, ``x[:, 2]`` D.
            No gradient flows to ``x``.

    Returns:
        ``[N, C]``.
    """
    n = x.shape[0]
    vol = grid.permute(3, 0, 1, 2)[None]
    out = F.grid_sample(vol, x.detach().to(grid.dtype).view(1, 1, 1, n, 3), **_KW)
    return out.view(grid.shape[3], n).t()


def sample_planes_ref(planes: Tensor, uv: Tensor) -> Tensor:
    """Bilinear lookup in a stack of channels-last planes.

    Args:
        planes: ``[P, H, W, C]``.
        uv: ``[P, N, 2]`` coordinates in ``[-1, 1]``; ``uv[..., 0]`` indexes W, ``uv[..., 1]`` H.
            No gradient flows to ``uv``.

    Returns:
        ``[P, N, C]`` (plane ``p`` is sampled at ``uv[p]``).
    """
    p, n, _ = uv.shape
    img = planes.permute(0, 3, 1, 2)
    out = F.grid_sample(img, uv.detach().to(planes.dtype).view(p, 1, n, 2), **_KW)
    return out[:, :, 0, :].permute(0, 2, 1)


def sample_lines_ref(lines: Tensor, t: Tensor) -> Tensor:
    """Linear lookup in a stack of channels-last lines.

    Args:
        lines: ``[P, L, C]``.
        t: ``[P, N]`` coordinates in ``[-1, 1]`` (``-1`` is entry 0, ``+1`` entry ``L - 1``).
            No gradient flows to ``t``.

    Returns:
        ``[P, N, C]``.
    """
    p, n = t.shape
    img = lines.permute(0, 2, 1)[..., None]  # [P, C, L, 1]: the line runs along H
    tt = t.detach().to(lines.dtype)
    coords = torch.stack([torch.zeros_like(tt), tt], dim=-1).view(p, n, 1, 2)
    out = F.grid_sample(img, coords, **_KW)  # [P, C, N, 1]
    return out[..., 0].permute(0, 2, 1)
