"""`render`: the one entry that renders a camera of any model — a radiance field (ray marching through
its occupancy grid) or Gaussian splats (tile rasterization) — to rgb, opacity and depth images."""

from __future__ import annotations

import torch
from torch import Tensor

from ..cameras import Cameras, image_rays
from ..errors import ConfigError
from .occupancy import OccupancyGrid
from .splat import BACKENDS, render_splats
from .volume import RenderConfig, ray_background, render_rays_chunked

__all__ = ["render", "ray_cos"]


@torch.no_grad()
def render(model, cams: Cameras, index: int = 0, grid: OccupancyGrid | None = None,
           settings: RenderConfig | None = None, background: str = "white", backend: str = "auto",
           chunk: int = 8192) -> dict[str, Tensor]:
    """Camera `index` of `cams` through a field or GaussianSplats, without gradients, composited on
    `background` (white, black): rgb [H,W,3] in [0,1], opacity [H,W], depth [H,W] (ray distance, scene
    units; 0 where empty). Fields use `grid` and `settings` (step size; default RenderConfig()) in
    chunks of `chunk` rays; splats use `backend` (auto, cpu, torch, gsplat)."""
    if backend not in BACKENDS:
        raise ConfigError(f"backend must be one of {', '.join(BACKENDS)}, got {backend!r}")
    if getattr(model, "name", "") == "splats":
        return _render_splats_image(model, cams, index, background, backend)
    if backend not in ("auto", "cpu"):
        raise ConfigError(f"backend {backend!r} renders splats only; fields take auto or cpu")
    rays_o, rays_d = image_rays(cams, index)
    bg = ray_background(background, rays_o.shape[0], rays_o.device)
    out = render_rays_chunked(model, rays_o, rays_d, grid, bg, settings or RenderConfig(), chunk)
    h, w = cams.height, cams.width
    return {"rgb": out["rgb"].reshape(h, w, 3).clamp(0, 1), "opacity": out["opacity"].reshape(h, w),
            "depth": out["depth"].reshape(h, w)}


def _render_splats_image(splats, cams: Cameras, i: int, background: str, backend: str) -> dict[str, Tensor]:
    cam = cams[i].to(splats.means.device)
    bg = ray_background(background, 1, cam.device)[0]
    out = render_splats(splats, cam, backend=backend)
    # composite here so the background is exact; camera z -> ray distance
    rgb = (out["rgb"] + (1 - out["opacity"])[..., None] * bg).clamp(0, 1)
    return {"rgb": rgb, "opacity": out["opacity"], "depth": out["depth"] / ray_cos(cam)}


def ray_cos(cam: Cameras) -> Tensor:
    """[H,W] cosine between each pixel's ray and the optical axis of the single camera `cam`
    (camera z = ray distance * cos)."""
    _, rays_d = image_rays(cam, 0)
    rays_cam = rays_d.to(cam.device) @ cam.c2w[0, :3, :3]
    return (-rays_cam[:, 2]).reshape(cam.height, cam.width).clamp_min(1e-6)
