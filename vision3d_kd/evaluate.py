"""Render held-out views of a field or splats and score them (PSNR, SSIM); render sets of views; score a run
directory on its dataset (what `v3kd eval` does)."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch import Tensor

from .cameras import Cameras
from .data import held_out_split, load_dataset
from .errors import ConfigError
from .metrics import psnr, ssim
from .render.image import render
from .render.occupancy import OccupancyGrid
from .render.volume import RenderConfig
from .runs import data_options_from, load_run, render_settings_from, update_metrics

__all__ = ["evaluate_field", "held_out_metrics", "save_png", "ViewSet", "render_views", "evaluate_run"]


@dataclass
class ViewSet:
    """Rendered views: cameras, rgb [N,H,W,3] on `background`, opacity [N,H,W], depth [N,H,W] (ray distance)."""

    cameras: Cameras
    rgb: Tensor
    opacity: Tensor
    depth: Tensor


@torch.no_grad()
def render_views(model, grid: OccupancyGrid | None, settings: RenderConfig | None, cams: Cameras,
                 background: str = "white", progress=None) -> ViewSet:
    """Render every camera of `cams` through a field (with its grid) or splats."""
    rgb, opacity, depth = [], [], []
    for i in range(len(cams)):
        out = render(model, cams, i, grid, settings, background)
        rgb.append(out["rgb"])
        opacity.append(out["opacity"])
        depth.append(out["depth"])
        if progress is not None:
            progress(i + 1, len(cams))
    return ViewSet(cams, torch.stack(rgb), torch.stack(opacity), torch.stack(depth))


def save_png(path: Path, rgb: Tensor) -> None:
    """Save an [H,W,3] image in [0,1] as 8-bit PNG."""
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray((rgb.clamp(0, 1).cpu().numpy() * 255 + 0.5).astype(np.uint8)).save(path)


@torch.no_grad()
def evaluate_field(field, dataset, grid: OccupancyGrid | None, settings: RenderConfig,
                   background: str = "white", chunk: int = 8192, save_dir: Path | None = None,
                   progress=None) -> dict[str, float]:
    """Render every view of `dataset` (a held-out split) and return mean PSNR/SSIM over views.

    Targets are the dataset's images composited on the same background as the renders."""
    targets = dataset.images(background)
    psnrs, ssims = [], []
    t0 = time.perf_counter()
    for i in range(len(dataset.cameras)):
        pred = render(field, dataset.cameras, i, grid, settings, background, chunk=chunk)["rgb"]
        psnrs.append(psnr(pred, targets[i]))
        ssims.append(ssim(pred, targets[i]))
        if save_dir is not None and i < 3:
            save_png(save_dir / f"{dataset.split}_{i:03d}.png", torch.cat([pred, targets[i]], dim=1))
        if progress is not None:
            progress(i + 1, len(dataset.cameras))
    seconds = time.perf_counter() - t0
    return {"psnr": float(np.mean(psnrs)), "ssim": float(np.mean(ssims)), "n_views": len(psnrs),
            "render_seconds_per_view": seconds / max(1, len(psnrs))}


def held_out_metrics(model, dataset, grid: OccupancyGrid | None, settings: RenderConfig | None,
                     background: str = "white", chunk: int = 8192, save_dir: Path | None = None) -> dict[str, float]:
    """`evaluate_field` on a held-out split, named as run metrics: psnr_test, ssim_test (mean over views),
    n_test_views, render_seconds_per_view."""
    ev = evaluate_field(model, dataset, grid, settings, background, chunk, save_dir)
    return {"psnr_test": ev["psnr"], "ssim_test": ev["ssim"], "n_test_views": ev["n_views"],
            "render_seconds_per_view": ev["render_seconds_per_view"]}


def evaluate_run(run: Path, data: Path | None = None, split: str | None = None, background: str = "white",
                 device: torch.device | str = "cpu") -> tuple[str, dict[str, float]]:
    """Score run `run` on split `split` (default: test, else val) of dataset `data` (default: the one it was
    fitted on, at its training downscale), renders and targets on a white or black background. Merges
    psnr_<split> (dB), ssim_<split> and n_<split>_views into RUN/metrics.json and saves the first views beside
    their targets in RUN/renders/. Returns (split, `evaluate_field`'s scores)."""
    if background not in ("white", "black"):
        raise ConfigError(f"--background must be white or black, got {background!r}")
    field, grid, cfg = load_run(run, device)
    data = data or (Path(cfg["data"]) if cfg.get("data") else None)
    if data is None:
        raise ConfigError(f"{run}: the run does not record its dataset; pass --data")
    split = split or held_out_split(data)
    if split is None:
        raise ConfigError(f"{data}: no test or val split to evaluate on (pass --split)")
    ds = load_dataset(data, split, **data_options_from(cfg))
    ev = evaluate_field(field, ds, grid, render_settings_from(cfg), background, save_dir=Path(run) / "renders")
    update_metrics(run, {f"psnr_{split}": ev["psnr"], f"ssim_{split}": ev["ssim"], f"n_{split}_views": ev["n_views"]})
    return split, ev
