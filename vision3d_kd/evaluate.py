"""Render full images of a field and score them against held-out views (PSNR, SSIM)."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch import Tensor

from .cameras import Cameras, image_rays
from .metrics import psnr, ssim
from .render.occupancy import OccupancyGrid
from .render.volume import RenderSettings, ray_background, render_rays_chunked

__all__ = ["render_image", "evaluate_field", "save_png", "ray_cos", "ViewSet", "render_views"]


def render_image(field, cams: Cameras, i: int, grid: OccupancyGrid | None, settings: RenderSettings,
                 background: str = "white", chunk: int = 8192) -> dict[str, Tensor]:
    """Render camera i of a field or GaussianSplats: rgb [H,W,3], opacity [H,W], depth [H,W]
    (ray distance, 0 where empty). `grid`/`settings`/`chunk` only apply to fields."""
    if getattr(field, "name", "") == "splats":
        return _render_splats_image(field, cams, i, background)
    rays_o, rays_d = image_rays(cams, i)
    bg = ray_background(background, rays_o.shape[0], rays_o.device)
    out = render_rays_chunked(field, rays_o, rays_d, grid, bg, settings, chunk)
    h, w = cams.height, cams.width
    return {"rgb": out["rgb"].reshape(h, w, 3).clamp(0, 1), "opacity": out["opacity"].reshape(h, w),
            "depth": out["depth"].reshape(h, w)}


@dataclass
class ViewSet:
    """Rendered views: cameras, rgb [N,H,W,3] on `background`, opacity [N,H,W], depth [N,H,W] (ray distance)."""

    cameras: Cameras
    rgb: Tensor
    opacity: Tensor
    depth: Tensor


@torch.no_grad()
def render_views(model, grid: OccupancyGrid | None, settings: RenderSettings | None, cams: Cameras,
                 background: str = "white", progress=None) -> ViewSet:
    """Render every camera of `cams` through a field (with its grid) or splats."""
    rgb, op, depth = [], [], []
    for i in range(len(cams)):
        out = render_image(model, cams, i, grid, settings or RenderSettings(), background)
        rgb.append(out["rgb"])
        op.append(out["opacity"])
        depth.append(out["depth"])
        if progress is not None:
            progress(i + 1, len(cams))
    return ViewSet(cams, torch.stack(rgb), torch.stack(op), torch.stack(depth))


def _render_splats_image(splats, cams: Cameras, i: int, background: str) -> dict[str, Tensor]:
    from .render.splat import render_splats

    cam = cams[i].to(splats.means.device)
    bg = ray_background(background, 1, cam.device)[0]
    with torch.no_grad():
        out = render_splats(splats, cam)
    # composite here so the background is exact; camera z -> ray distance
    cos = ray_cos(cam)
    rgb = (out["rgb"] + (1 - out["alpha"])[..., None] * bg).clamp(0, 1)
    return {"rgb": rgb, "opacity": out["alpha"], "depth": out["depth"] / cos}


def ray_cos(cam: Cameras) -> Tensor:
    """[H,W] cosine between each pixel's ray and the optical axis of the single camera `cam`
    (camera z = ray distance * cos)."""
    _, rays_d = image_rays(cam, 0)
    rays_cam = rays_d.to(cam.device) @ cam.c2w[0, :3, :3]
    return (-rays_cam[:, 2]).reshape(cam.height, cam.width).clamp_min(1e-6)


def save_png(path: Path, rgb: Tensor) -> None:
    """Save an [H,W,3] image in [0,1] as 8-bit PNG."""
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray((rgb.clamp(0, 1).cpu().numpy() * 255 + 0.5).astype(np.uint8)).save(path)


@torch.no_grad()
def evaluate_field(field, dataset, grid: OccupancyGrid | None, settings: RenderSettings,
                   background: str = "white", chunk: int = 8192, save_dir: Path | None = None,
                   progress=None) -> dict[str, float]:
    """Render every view of `dataset` (a held-out split) and return mean PSNR/SSIM over views.

    Targets are the dataset's images composited on the same background as the renders."""
    targets = dataset.images(background)
    psnrs, ssims = [], []
    t0 = time.perf_counter()
    for i in range(len(dataset.cameras)):
        pred = render_image(field, dataset.cameras, i, grid, settings, background, chunk)["rgb"]
        psnrs.append(psnr(pred, targets[i]))
        ssims.append(ssim(pred, targets[i]))
        if save_dir is not None and i < 3:
            save_png(save_dir / f"{dataset.split}_{i:03d}.png", torch.cat([pred, targets[i]], dim=1))
        if progress is not None:
            progress(i + 1, len(dataset.cameras))
    seconds = time.perf_counter() - t0
    return {"psnr": float(np.mean(psnrs)), "ssim": float(np.mean(ssims)), "n_views": len(psnrs),
            "render_seconds_per_view": seconds / max(1, len(psnrs))}
