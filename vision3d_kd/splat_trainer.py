"""`v3kd fit --field splats`: optimise 3D Gaussian splats on posed images (one full image per step,
L1 + D-SSIM loss, adaptive density control, SH degree schedule). Same run directory, metrics and
resume contract as `trainer.fit`.
"""

from __future__ import annotations

import math
import resource
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from .cameras import orbit_defaults
from .checkpoint import load_field, load_tensors, save_field, save_tensors, write_json
from .config import FitConfig
from .errors import RunError
from .evaluate import evaluate_field, ray_cos
from .fields.splats import GaussianSplats
from .metrics import ssim_tensor
from .render.splat import render_splats
from .render.volume import ray_background
from .splat_density import DensityController
from .splat_init import initial_points
from .train_loop import TrainLoop
from .train_state import load_train_state, save_train_state

__all__ = ["fit_splats", "camera_extent", "DENSITY_STATE"]

DENSITY_STATE = "densify.safetensors"


def camera_extent(c2w: torch.Tensor) -> float:
    """Scene extent as 3DGS defines it: 1.1 x the largest distance of a camera centre from their mean."""
    centres = c2w[:, :3, 3]
    return 1.1 * float((centres - centres.mean(0)).norm(dim=-1).max().clamp_min(1e-3))


def _optimizer(splats: GaussianSplats, tc, extent: float) -> torch.optim.Optimizer:
    lrs = {"means": tc.lr_means * extent, "log_scales": tc.lr_scales, "quats": tc.lr_quats,
           "opacity_logits": tc.lr_opacity, "sh_dc": tc.lr_sh, "sh_rest": tc.lr_sh / 20}
    groups = [{"params": [getattr(splats, k)], "lr": lr, "name": k} for k, lr in lrs.items()]
    return torch.optim.Adam(groups, eps=1e-15)


def _init_splats(tc, aabb: torch.Tensor, gen: torch.Generator, sh_degree: int) -> GaussianSplats:
    splats = GaussianSplats(aabb=aabb.tolist(), n=0, sh_degree=sh_degree)
    if tc.init == "random":
        return splats.init_random(tc.init_points, generator=gen, opacity=tc.init_opacity)
    pts, cols = initial_points(tc.init, tc.init_points, gen)
    return splats.init_points(pts, cols, opacity=tc.init_opacity, generator=gen)


def _depth_l1(res: dict[str, torch.Tensor], depth: torch.Tensor, alpha: torch.Tensor, cam) -> torch.Tensor:
    """L1 (scene units) between the rendered expected camera z and the target's (ray distance
    `depth` [H,W] -> z), over pixels with alpha > 0.5 and finite depth."""
    solid = (alpha > 0.5) & torch.isfinite(depth)
    if not bool(solid.any()):
        return res["depth"].sum() * 0.0
    target_z = depth.nan_to_num(0.0, posinf=0.0) * ray_cos(cam).to(depth.device)
    return (res["depth"] - target_z).abs()[solid].mean()


def fit_splats(
    train_ds,
    test_ds,
    out: Path,
    cfg: FitConfig,
    data_path: Path | None = None,
    resume: bool = False,
    device: torch.device | str = "cpu",
    show_progress: bool = True,
    callback: Callable[[int, dict[str, float]], None] | None = None,
) -> dict[str, Any]:
    """Train Gaussian splats on `train_ds`, evaluate on `test_ds`, write RUN `out`; returns metrics."""
    tc = cfg.train
    tc.validate()
    out = Path(out)
    torch.manual_seed(tc.seed)
    gen = torch.Generator().manual_seed(tc.seed)
    extent = camera_extent(train_ds.cameras.c2w)
    sh_degree = int(cfg.field.get("sh_degree", 3))
    if resume:
        splats, _ = load_field(out)
        if not isinstance(splats, GaussianSplats):
            raise RunError(f"{out}: not a splats run")
    else:
        splats = _init_splats(tc, train_ds.aabb, gen, sh_degree)
    splats = splats.to(device).train()
    opt = _optimizer(splats, tc, extent)
    density = DensityController(tc, extent)
    step, elapsed_before = 0, 0.0
    if resume:
        meta, _ = load_train_state(out, opt, gen)
        step, elapsed_before = meta["step"], meta["elapsed"]
        if (out / DENSITY_STATE).is_file():
            density.load_state_dict(load_tensors(out / DENSITY_STATE, check_finite=False))
    run_cfg = {"fit": cfg.to_dict(), "data": str(data_path) if data_path else None,
               "render": orbit_defaults(train_ds.cameras)}

    def checkpoint(at_step: int, elapsed: float) -> None:
        save_train_state(out, opt, {"step": at_step, "elapsed": elapsed}, gen)
        save_tensors(out / DENSITY_STATE, density.state_dict())
        save_field(out, splats, run_cfg)

    cams = train_ds.cameras
    rgb_all, alpha_all = train_ds.rgb, train_ds.alpha
    n_views = len(cams)
    loop = TrainLoop(out, "splats", tc.steps, checkpoint, start_step=step, elapsed_before=elapsed_before,
                     max_seconds=tc.max_seconds, log_every=tc.log_every, checkpoint_every=tc.checkpoint_every,
                     resume=resume, show_progress=show_progress, callback=callback,
                     snapshot=lambda path: save_field(path, splats, run_cfg), snapshot_every=tc.snapshot_every_seconds)
    order = torch.randperm(n_views, generator=gen)
    with loop:
        while loop.running():
            step = loop.step
            lr_means = tc.lr_means * extent * (tc.lr_means_final / tc.lr_means) ** loop.progress()
            opt.param_groups[0]["lr"] = lr_means
            splats.active_sh_degree.fill_(min(splats.sh_degree, step // tc.sh_degree_every))
            if step % n_views == 0 and step > 0:
                order = torch.randperm(n_views, generator=gen)
            i = int(order[step % n_views])
            bg = ray_background(tc.background, 1, torch.device("cpu"), gen)[0].to(device)
            a = alpha_all[i].to(device)
            target = rgb_all[i].to(device) * a + bg * (1 - a)
            res = render_splats(splats, cams[i].to(device), bg, backend=tc.backend)
            l1 = (res["rgb"] - target).abs().mean()
            loss = (1 - tc.ssim_lambda) * l1
            if tc.ssim_lambda > 0:
                loss = loss + tc.ssim_lambda * (1 - ssim_tensor(res["rgb"], target))
            if tc.depth_weight > 0 and train_ds.depth is not None:
                loss = loss + tc.depth_weight * _depth_l1(res, train_ds.depth[i].to(device), a[..., 0], cams[i])
            loss.backward()
            density.accumulate(res["means2d"], res["visible"], cams.width, cams.height)
            opt.step()
            opt.zero_grad(set_to_none=True)
            changed = density.step(step + 1, splats, opt, gen)
            psnr_train = -10 * math.log10(max(float(((res["rgb"].detach() - target) ** 2).mean()), 1e-10))
            rec = {"loss": loss.item(), "psnr_train": psnr_train, "gaussians": splats.n,
                   "sh_degree": int(splats.active_sh_degree), "lr_means": lr_means}
            if changed:
                rec["densify"] = changed
            loop.end_step(rec, f"psnr {psnr_train:.2f}  gaussians {splats.n}", force_log=bool(changed))
    step, train_seconds = loop.step, loop.elapsed
    splats.eval()
    metrics: dict[str, Any] = {"steps": step, "seconds": round(train_seconds, 2), "field": "splats",
                               "gaussians": splats.n, "params": sum(p.numel() for p in splats.parameters())}
    if test_ds is not None:
        ev = evaluate_field(splats, test_ds, None, None, tc.eval_background, save_dir=out / "renders")
        metrics.update({"psnr_test": ev["psnr"], "ssim_test": ev["ssim"], "n_test_views": ev["n_views"],
                        "render_seconds_per_view": ev["render_seconds_per_view"]})
    metrics["peak_memory_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    write_json(out / "metrics.json", metrics)
    return metrics
