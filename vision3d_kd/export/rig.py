"""Cameras around a run's scene for exports (point clouds, TSDF fusion): rings of views spread over the
elevation range of the run's training cameras, at their distance and field of view, looking at the
origin (z up)."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from ..cameras import Cameras, cameras_from_spherical, image_rays
from ..errors import ConfigError
from ..render.image import render
from ..render.occupancy import OccupancyGrid
from ..render.volume import RenderConfig
from .mesh import opacity_crossing

__all__ = ["rig_cameras", "view_depth", "view_surface", "render_points"]


def rig_cameras(render_cfg: dict[str, Any], n: int, size: int | None = None, rings: int = 3) -> Cameras:
    """n cameras (> 0) on `rings` elevation rings evenly inside the run's training elevation range (its
    config `render` section: elevation_range_deg, else elevation_deg ± 20°), azimuths evenly spaced and
    staggered between rings; radius, fov and image size (or size x size) from the same section."""
    if n < 1:
        raise ConfigError(f"--views must be >= 1, got {n}")
    rng = render_cfg.get("elevation_range_deg")
    if rng is None:
        mid = float(render_cfg.get("elevation_deg", 30.0))
        rng = (max(mid - 20.0, -89.0), min(mid + 20.0, 89.0))
    rings = max(1, min(rings, n))
    ring = torch.arange(n) % rings
    elev = float(rng[0]) + (float(rng[1]) - float(rng[0])) * (ring.float() + 0.5) / rings
    azim = torch.arange(n).float() * (360.0 / n) + ring.float() * (180.0 / n)
    full = torch.ones(n)
    w = size or int(render_cfg.get("width", 200))
    h = size or int(render_cfg.get("height", 200))
    return cameras_from_spherical(elev, azim, full * float(render_cfg.get("radius", 4.0)),
                                  full * float(render_cfg.get("fov_y_deg", 40.0)), w, h)


def _render(model, grid: OccupancyGrid | None, settings: RenderConfig, cams: Cameras, i: int) -> dict:
    return render(model, cams.to(model.aabb.device), i, grid, settings, background="black")


def view_depth(model, grid: OccupancyGrid | None, settings: RenderConfig, cams: Cameras, i: int,
               min_opacity: float = 0.5, rendered: dict | None = None) -> Tensor:
    """Surface distance along every pixel ray of camera i (row-major [H*W], world units, inf where the
    pixel stays transparent): fields where the opacity crosses 0.5, splats their alpha-normalised depth
    (from `rendered`, camera i's render_image on black, when the caller has it)."""
    if getattr(model, "name", "") != "splats":
        return opacity_crossing(model, grid, settings, *image_rays(cams.to(model.aabb.device), i))[0].float().cpu()
    out = rendered if rendered is not None else _render(model, grid, settings, cams, i)
    depth, opacity = out["depth"].reshape(-1).float().cpu(), out["opacity"].reshape(-1).float().cpu()
    return torch.where(opacity > min_opacity, depth, torch.full_like(depth, float("inf")))


@torch.no_grad()
def view_surface(model, grid: OccupancyGrid | None, settings: RenderConfig, cams: Cameras, i: int,
                 min_opacity: float = 0.5) -> tuple[Tensor, Tensor]:
    """Camera i rendered once: view_depth [H*W] and the colour on black, un-premultiplied by its opacity,
    RGB [H*W,3] in [0,1] (row-major, CPU)."""
    out = _render(model, grid, settings, cams, i)
    opacity = out["opacity"].reshape(-1, 1).float().cpu()
    rgb = (out["rgb"].reshape(-1, 3).float().cpu() / opacity.clamp_min(1e-6)).clamp(0, 1)
    return view_depth(model, grid, settings, cams, i, min_opacity, rendered=out), rgb


@torch.no_grad()
def render_points(model, grid: OccupancyGrid | None, settings: RenderConfig, cams: Cameras, i: int,
                  min_opacity: float = 0.5) -> tuple[Tensor, Tensor, Tensor]:
    """Camera i of a field or splats run: per pixel (row-major) the surface point [H*W,3] (world units, at
    view_depth), its colour [H*W,3] (rendered on black, un-premultiplied) and whether it has one [H*W]."""
    depth, rgb = view_surface(model, grid, settings, cams, i, min_opacity)
    o, d = image_rays(cams.to("cpu"), i)
    ok = torch.isfinite(depth)
    return o + d * torch.where(ok, depth, torch.zeros_like(depth))[:, None], rgb, ok
