"""Render Gaussian splats from one camera with a chosen backend.

backend "auto": gsplat on CUDA tensors when it imports, else "cpu" (fused C++ tile rasterizer, with
the pure-torch reference as fallback); "torch" forces the reference. All return the same keys.
"""

from __future__ import annotations

import torch
from torch import Tensor

from ..cameras import Cameras
from ..kernels.splat import rasterize
from ..kernels.splat_ref import rasterize_ref
from .splat_gsplat import gsplat_available, rasterize_gsplat
from .splat_project import project_gaussians, sh_colors

__all__ = ["render_splats", "BACKENDS"]

BACKENDS = ("auto", "cpu", "torch", "gsplat")


def render_splats(
    splats,
    cam: Cameras,
    background: Tensor | None = None,
    backend: str = "auto",
    sh_degree: int | None = None,
    near: float = 0.01,
    far: float = 1e10,
) -> dict[str, Tensor]:
    """Render `splats` (GaussianSplats) from the single camera `cam` (OpenGL c2w, pixels).

    Returns rgb [H,W,3] over `background` [3] (black if None), opacity [H,W], depth [H,W] (expected
    camera z, world units), means2d [N,2] pixel positions (its .grad after backward is the
    screen-space gradient used for densification), radii [N] (0 = culled) and visible [N] bool."""
    if backend not in BACKENDS:
        raise ValueError(f"unknown splat backend {backend!r}; choose one of {', '.join(BACKENDS)}")
    if len(cam) != 1:
        raise ValueError(f"render_splats takes one camera, got {len(cam)}")
    degree = int(splats.active_sh_degree) if sh_degree is None else int(sh_degree)
    viewmat = cam.w2c_opencv()[0].to(splats.means)
    K = cam.K[0].to(splats.means)
    w, h = cam.width, cam.height
    colors = sh_colors(splats.sh, splats.means, cam.origins[0].to(splats.means), degree)
    if backend == "gsplat" or (backend == "auto" and splats.means.is_cuda and gsplat_available()):
        out = rasterize_gsplat(splats.means, splats.quats, splats.scales, splats.opacities, colors, viewmat, K,
                               w, h, background, near, far)
        out["visible"] = out["radii"] > 0
        return out
    proj = project_gaussians(splats.means, splats.quats, splats.scales, viewmat, K, w, h, near, far)
    if torch.is_grad_enabled() and proj.means2d.requires_grad:
        proj.means2d.retain_grad()
    raster = rasterize_ref if backend == "torch" else rasterize
    out = raster(proj, colors, splats.opacities, w, h, background)
    out.update(means2d=proj.means2d, radii=proj.radii, visible=proj.visible)
    return out
