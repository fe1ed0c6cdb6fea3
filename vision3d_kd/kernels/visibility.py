"""Fused C++/OpenMP hidden-interior test over a lattice (`csrc/visibility.cpp`), same contract as
`hidden_update_ref`. Used for float32 CPU tensors; anything else (or `V3KD_NO_EXT=1`, or no compiler) takes
the reference."""

from __future__ import annotations

import torch
from torch import Tensor

from ..cameras import Cameras
from .dispatch import n_threads, use_fused
from .visibility_ref import hidden_update_ref

__all__ = ["hidden_update"]


def hidden_update(axes: Tensor, cams: Cameras, i: int, depth: Tensor, margin: float, seen: Tensor,
                  visible: Tensor) -> None:
    """Update bool masks seen, visible [R³] of the lattice axes [3,R] (in place) with camera i and its
    surface distances depth [H*W] (see `hidden_update_ref`)."""
    ext = use_fused("visibility", axes, depth, cams.c2w)
    if ext is None or not (seen.is_contiguous() and visible.is_contiguous()):
        hidden_update_ref(axes, cams, i, depth, margin, seen, visible)
        return
    res = axes.shape[1]
    ax = axes.float().contiguous()
    c2w = cams.c2w[i, :3, :4].float().contiguous()
    dep = depth.float().contiguous()
    ext.hidden_update(ax.data_ptr(), res, c2w.data_ptr(), float(cams.fx[i]), float(cams.fy[i]), float(cams.cx[i]),
                      float(cams.cy[i]), int(cams.width), int(cams.height), dep.data_ptr(), float(margin),
                      seen.view(torch.uint8).data_ptr(), visible.view(torch.uint8).data_ptr(),
                      n_threads(res**3, 1 << 18))
