"""gsplat backend (CUDA only, imported lazily): the same call as the CPU rasterizer through
`gsplat.rasterization`. Colours are evaluated from SH by the package (`sh_colors`) and passed as
RGB, so both backends shade identically."""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = ["gsplat_available", "rasterize_gsplat"]


def gsplat_available() -> bool:
    """True when CUDA is usable and gsplat imports."""
    if not torch.cuda.is_available():
        return False
    try:
        import gsplat  # noqa: F401
    except Exception:
        return False
    return True


def rasterize_gsplat(
    means: Tensor,
    quats: Tensor,
    scales: Tensor,
    opacities: Tensor,
    colors: Tensor,
    viewmat: Tensor,
    K: Tensor,
    width: int,
    height: int,
    background: Tensor | None,
    near: float,
    far: float,
    eps2d: float = 0.3,
) -> dict[str, Tensor]:
    """Render with gsplat (viewmat [4,4] world->camera OpenCV, K [3,3]); returns rgb [H,W,3], opacity [H,W],
    depth [H,W] (expected z), means2d [N,2] (gradients kept for densification) and radii [N]."""
    from gsplat import rasterization

    bg = None if background is None else background.reshape(1, 3).to(colors)
    img, alpha, meta = rasterization(
        means, quats, scales, opacities, colors, viewmat[None], K[None], width, height,
        near_plane=near, far_plane=far, eps2d=eps2d, packed=False, render_mode="RGB+ED", backgrounds=bg,
    )
    means2d = meta["means2d"][0] if meta["means2d"].dim() == 3 else meta["means2d"]
    radii = meta["radii"][0]
    if radii.dim() == 2:  # newer gsplat: per-axis radii
        radii = radii.max(dim=-1).values
    return {"rgb": img[0, ..., :3], "opacity": alpha[0, ..., 0], "depth": img[0, ..., 3], "means2d": means2d,
            "radii": radii.int()}
