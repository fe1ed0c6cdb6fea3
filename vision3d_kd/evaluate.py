"""Render held-out views of a field or splats and score them (PSNR, SSIM); render sets of views; score a run
directory on its dataset (what `v3kd eval` does)."""

from __future__ import annotations

import json
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
from .render.intrinsics_adjust import INTRINSICS_FILE, IntrinsicsAdjustment
from .render.occupancy import OccupancyGrid
from .render.pose_adjust import adjust_cameras, align_pose
from .render.volume import RenderConfig
from .runs import data_options_from, load_run, render_settings_from, update_metrics

__all__ = ["evaluate_field", "aligned_cameras", "held_out_metrics", "save_png", "ViewSet", "render_views",
           "evaluate_run"]


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
def aligned_cameras(field, dataset, grid: OccupancyGrid | None, settings: RenderConfig, background: str = "white",
                    steps: int = 100) -> tuple[Cameras, dict[str, float]]:
    """The held-out cameras of `dataset` each moved to where the frozen field best explains its image
    (`render.pose_adjust.align_pose`, `steps` steps) and how far they moved (degrees, scene units), with
    the number of steps (align_steps)."""
    targets = dataset.images(background)
    deltas = torch.stack([align_pose(field, grid, settings, dataset.cameras, i, targets[i], background, steps, seed=i)
                          for i in range(len(dataset.cameras))])
    rot = deltas[:, :3].norm(dim=1) * (180.0 / np.pi)
    moved = {"align_steps": steps, "align_rot_deg_mean": float(rot.mean()), "align_rot_deg_max": float(rot.max()),
             "align_trans_mean": float(deltas[:, 3:].norm(dim=1).mean())}
    return adjust_cameras(dataset.cameras, deltas), moved


def evaluate_field(field, dataset, grid: OccupancyGrid | None, settings: RenderConfig,
                   background: str = "white", chunk: int = 8192, save_dir: Path | None = None,
                   progress=None, cameras: Cameras | None = None) -> dict[str, float]:
    """Render every view of `dataset` (a held-out split; through `cameras` instead of its own when given,
    e.g. `aligned_cameras`) and return mean PSNR/SSIM over views.

    Targets are the dataset's images composited on the same background as the renders."""
    targets = dataset.images(background)
    cams = dataset.cameras if cameras is None else cameras
    psnrs, ssims = [], []
    t0 = time.perf_counter()
    for i in range(len(cams)):
        pred = render(field, cams, i, grid, settings, background, chunk=chunk)["rgb"]
        psnrs.append(psnr(pred, targets[i]))
        ssims.append(ssim(pred, targets[i]))
        if save_dir is not None and i < 3:
            save_png(save_dir / f"{dataset.split}_{i:03d}.png", torch.cat([pred, targets[i]], dim=1))
        if progress is not None:
            progress(i + 1, len(cams))
    seconds = time.perf_counter() - t0
    return {"psnr": float(np.mean(psnrs)), "ssim": float(np.mean(ssims)), "n_views": len(psnrs),
            "render_seconds_per_view": seconds / max(1, len(psnrs))}


def held_out_metrics(model, dataset, grid: OccupancyGrid | None, settings: RenderConfig | None,
                     background: str = "white", chunk: int = 8192, save_dir: Path | None = None,
                     align_steps: int = 0) -> dict[str, float]:
    """`evaluate_field` on a held-out split, named as run metrics: psnr_test, ssim_test (mean over views),
    n_test_views, render_seconds_per_view; with `align_steps` > 0 also psnr_test_aligned, ssim_test_aligned
    and align_rot_deg_* / align_trans_mean: the same after `aligned_cameras` (fields only)."""
    ev = evaluate_field(model, dataset, grid, settings, background, chunk, save_dir)
    out = {"psnr_test": ev["psnr"], "ssim_test": ev["ssim"], "n_test_views": ev["n_views"],
           "render_seconds_per_view": ev["render_seconds_per_view"]}
    if align_steps > 0:
        cams, moved = aligned_cameras(model, dataset, grid, settings or RenderConfig(), background, align_steps)
        al = evaluate_field(model, dataset, grid, settings, background, chunk, cameras=cams)
        out.update({"psnr_test_aligned": al["psnr"], "ssim_test_aligned": al["ssim"], **moved})
    return out


def evaluate_run(run: Path, data: Path | None = None, split: str | None = None, background: str = "white",
                 device: torch.device | str = "cpu", align_steps: int = 0) -> tuple[str, dict[str, float]]:
    """Score run `run` on split `split` (default: test, else val) of dataset `data` (default: the one it was
    fitted on, at its training downscale), renders and targets on a white or black background. Merges
    psnr_<split> (dB), ssim_<split> and n_<split>_views into RUN/metrics.json and saves the first views beside
    their targets in RUN/renders/. With `align_steps` > 0 (fields; for estimated poses) the held-out cameras are
    first aligned to their images (`aligned_cameras`) and the keys are psnr_<split>_aligned,
    ssim_<split>_aligned. A run fitted with --refine-intrinsics renders through its learned camera corrections
    (RUN/intrinsics.json). Returns (split, `evaluate_field`'s scores)."""
    if background not in ("white", "black"):
        raise ConfigError(f"--background must be white or black, got {background!r}")
    if align_steps < 0:
        raise ConfigError(f"--align-poses must be >= 0 steps, got {align_steps}")
    field, grid, cfg = load_run(run, device)
    if align_steps and getattr(field, "name", "") == "splats":
        raise ConfigError("--align-poses needs a field run (splats have no pose gradient here)")
    data = data or (Path(cfg["data"]) if cfg.get("data") else None)
    if data is None:
        raise ConfigError(f"{run}: the run does not record its dataset; pass --data")
    split = split or held_out_split(data)
    if split is None:
        raise ConfigError(f"{data}: no test or val split to evaluate on (pass --split)")
    ds = load_dataset(data, split, **data_options_from(cfg))
    if (Path(run) / INTRINSICS_FILE).is_file():  # fitted with --refine-intrinsics: the same cameras' corrections
        ds = IntrinsicsAdjustment.from_dict(json.loads((Path(run) / INTRINSICS_FILE).read_text())).corrected(ds)
    settings, cams, moved, tag = render_settings_from(cfg), None, {}, ""
    if align_steps:
        cams, moved = aligned_cameras(field, ds, grid, settings or RenderConfig(), background, align_steps)
        tag = "_aligned"
    ev = evaluate_field(field, ds, grid, settings, background, save_dir=Path(run) / "renders", cameras=cams)
    update_metrics(run, {f"psnr_{split}{tag}": ev["psnr"], f"ssim_{split}{tag}": ev["ssim"],
                         f"n_{split}_views": ev["n_views"], **moved})
    return split, {**ev, **moved}
