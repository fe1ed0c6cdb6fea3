"""Field -> Gaussian splats conversion: the teacher field renders virtual views (colour, opacity and
depth); Gaussians start at points drawn from the teacher's density (`splat_init.points_from_run`)
and are fitted to those renders with an extra depth loss (`SplatTrainConfig.depth_weight`)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import torch

from ..data.dataset import Dataset
from ..errors import ConfigError
from ..parallel import DistEnv
from ..runs import capture_transform, load_field, update_metrics
from ..train.config import FitConfig
from ..train.driver import make_generator
from ..train.fit import fit
from .convert_config import ConvertConfig
from .teacher import Teacher, eval_cameras, mean_psnr, render_views, virtual_sampler

__all__ = ["convert_to_splats", "teacher_dataset"]


def teacher_dataset(teacher: Teacher, cfg: ConvertConfig, gen: torch.Generator) -> Dataset:
    """`virtual_views` teacher renders at its run's image size as a Dataset: straight rgb, alpha =
    teacher opacity, depth = expected ray distance (inf where the opacity is below 0.5)."""
    cams = virtual_sampler(teacher, cfg).sample(cfg.virtual_views, gen)
    views = render_views(teacher.model, teacher.grid, teacher.settings, cams, background="black")
    opacity = views.opacity.clamp(0, 1)
    rgb = torch.where(opacity[..., None] > 1e-4, views.rgb / opacity[..., None].clamp_min(1e-4), 0.0).clamp(0, 1)
    depth = torch.where(opacity > 0.5, views.depth / opacity.clamp_min(1e-6), torch.full_like(opacity, float("inf")))
    return Dataset(rgb=rgb, opacity=opacity[..., None], cameras=cams, aabb=teacher.aabb.cpu().clone(), depth=depth,
                   names=[f"virtual_{i:04d}" for i in range(len(cams))], path=teacher.path, split="virtual")


def convert_to_splats(teacher: Teacher, out: Path, cfg: ConvertConfig, fit_cfg: FitConfig, test_ds=None,
                      resume: bool = False, device: torch.device | str = "cpu", rank: int = 0,
                      show_progress: bool = True, callback=None) -> dict[str, Any]:
    """Distil a field teacher into Gaussian splats at `out`; metrics as `v3kd fit --field splats` plus
    psnr_vs_teacher (held-out virtual views) and prepare_seconds (rendering the teacher's views)."""
    if teacher.kind != "field":
        raise ConfigError(f"{teacher.path}: the teacher is already Gaussian splats")
    t0 = time.perf_counter()
    tc = fit_cfg.train
    gen = make_generator(tc.seed)
    ds = teacher_dataset(teacher, cfg, gen)
    ds.transform = capture_transform(teacher.config)  # exports can still go back to the capture's frame
    tc.init = str(teacher.path)
    if cfg.depth_weight > 0 and tc.depth_weight == 0:
        tc.depth_weight = cfg.depth_weight
    prepare = time.perf_counter() - t0
    data = teacher.config.get("data")
    if fit_cfg.field_name != "splats":
        raise ConfigError(f"convert_to_splats needs the splats fit settings, got {fit_cfg.field_name!r}")
    metrics = fit(ds, test_ds, out, fit_cfg, data_path=Path(data) if data else None, resume=resume,
                  device=device, dist=DistEnv(rank=rank), show_progress=show_progress, callback=callback)
    if rank != 0:  # the run (and its evaluation) is rank 0's
        return metrics
    cams = eval_cameras(teacher, cfg)
    ref = render_views(teacher.model, teacher.grid, teacher.settings, cams)
    splats, _ = load_field(out)
    pred = render_views(splats.to(device).eval(), None, None, cams)
    extra = {"teacher": teacher.model.name, "prepare_seconds": round(prepare, 2), "active": cfg.active,
             "psnr_vs_teacher": mean_psnr(pred, ref), "n_teacher_views": len(cams)}
    return update_metrics(out, extra)
