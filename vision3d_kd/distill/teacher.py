"""Teachers for conversion: a fitted run (field or Gaussian splats) queried at sample points or
rendered from virtual cameras around the scene.

Virtual cameras orbit the scene centre at the teacher run's camera distance and field of view (its
config.json `render` section), azimuth uniform, elevation uniform in the teacher's training cameras'
range (or a configured one), z up."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from ..cameras import Cameras, RandomCameraSampler, orbit_defaults, pixel_rays
from ..data import load_dataset
from ..errors import DataError, RunError
from ..evaluate import ViewSet, render_views
from ..metrics import psnr
from ..render.occupancy import OccupancyGrid
from ..render.volume import RenderConfig
from ..runs import load_run, render_settings_from
from .convert_config import ConvertConfig

DEFAULT_ELEVATION = (-30.0, 89.0)  # virtual cameras when the teacher's rig is unknown

__all__ = ["Teacher", "load_teacher", "virtual_sampler", "eval_cameras", "render_views", "ViewSet", "view_rays",
           "mean_psnr"]  # ViewSet / render_views live in evaluate.py; re-exported for the distillers


@dataclass
class Teacher:
    """A loaded run: `model` is a Field (with its occupancy `grid`) or GaussianSplats (grid None)."""

    model: Any
    grid: OccupancyGrid | None
    config: dict[str, Any]
    settings: RenderConfig
    path: Path
    elevation_range: tuple[float, float] = DEFAULT_ELEVATION  # its training cameras' elevations (degrees)

    @property
    def kind(self) -> str:
        """'splats' or 'field'."""
        return "splats" if self.model.name == "splats" else "field"

    @property
    def aabb(self) -> Tensor:
        return self.model.aabb

    @torch.no_grad()
    def block(self, pts: Tensor) -> tuple[Tensor, Tensor]:
        """Field teachers: world points [S,3] -> the block (log sigma [S], geometry features [S,G])."""
        return self.model.block(pts)

    @torch.no_grad()
    def color(self, geo: Tensor, rays_d: Tensor, ray_i: Tensor) -> Tensor:
        """Field teachers: per-sample rgb [S,3] of geometry features geo [S,G] seen along rays_d[ray_i]."""
        return self.model.color_from_dirs(geo, self.model.encode_dirs(rays_d).index_select(0, ray_i))


def load_teacher(run: Path, device: torch.device | str = "cpu") -> Teacher:
    """Load RUN as a teacher; RunError (one line) when its config, weights or field type is unusable."""
    model, grid, cfg = load_run(Path(run), device)
    render = cfg.get("render") or {}
    if not {"radius", "fov_y_deg", "width", "height"} <= set(render):
        raise RunError(f"{run}/config.json: no 'render' camera section (radius, fov_y_deg, width, height)")
    for p in model.parameters():
        p.requires_grad_(False)
    return Teacher(model, grid, cfg, render_settings_from(cfg), Path(run), rig_elevation(cfg))


def rig_elevation(cfg: dict[str, Any]) -> tuple[float, float]:
    """[min, max] elevation (degrees) of a run's training cameras: its config's render section, else its
    dataset's training cameras when that is still readable, else DEFAULT_ELEVATION. Virtual cameras
    outside it would ask the teacher for views it never learnt (e.g. under the lego's base plate)."""
    rng = (cfg.get("render") or {}).get("elevation_range_deg")
    if rng is None and cfg.get("data"):
        try:
            rng = orbit_defaults(load_dataset(cfg["data"], "train").cameras)["elevation_range_deg"]
        except (DataError, OSError):
            rng = None
    return (float(rng[0]), float(rng[1])) if rng is not None else DEFAULT_ELEVATION


def virtual_sampler(teacher: Teacher, cfg: ConvertConfig, size: int | None = None) -> RandomCameraSampler:
    """Random cameras around the teacher's scene (its camera distance x radius_scale, its fov)."""
    r = teacher.config["render"]
    fov = float(r["fov_y_deg"])
    w, h = (size, size) if size else (int(r["width"]), int(r["height"]))
    radius = float(r["radius"])
    return RandomCameraSampler(
        elevation_deg=cfg.elevation_deg or teacher.elevation_range,
        radius=(radius * cfg.radius_scale[0], radius * cfg.radius_scale[1]),
        fov_y_deg=(fov, fov), width=w, height=h,
    )


def eval_cameras(teacher: Teacher, cfg: ConvertConfig) -> Cameras:
    """Fixed held-out virtual cameras (own seed, never used for training) at eval_size pixels."""
    gen = torch.Generator().manual_seed(12345)
    return virtual_sampler(teacher, cfg, cfg.eval_size).sample(cfg.eval_views, gen)


def view_rays(views: ViewSet, idx: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:
    """Rays of flat pixel indices idx [M] into a ViewSet: rays_o, rays_d [M,3], rgb [M,3], opacity, depth [M]."""
    n, h, w = views.opacity.shape
    cam, rem = idx // (h * w), idx % (h * w)
    rays_o, rays_d = pixel_rays(views.cameras, cam, rem % w, rem // w)
    return (rays_o, rays_d, views.rgb.reshape(-1, 3).index_select(0, idx),
            views.opacity.reshape(-1).index_select(0, idx), views.depth.reshape(-1).index_select(0, idx))


def mean_psnr(pred: ViewSet, ref: ViewSet) -> float:
    """Mean over views of the PSNR (dB) of `pred`'s rgb against `ref`'s (same cameras)."""
    return float(sum(psnr(p, r) for p, r in zip(pred.rgb, ref.rgb, strict=True)) / len(ref.rgb))
