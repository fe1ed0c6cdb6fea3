"""`v3kd fit`: optimise a radiance field on posed images with occupancy-grid ray marching.

The trainer owns no global state: it receives its device and seed, writes everything to its run
directory, and can resume from the last checkpoint (weights, optimizer moments, RNG, occupancy grid).
"""

from __future__ import annotations

import math
import resource
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from .cameras import Cameras, image_rays, orbit_defaults
from .checkpoint import load_field, load_tensors, save_field, save_tensors, write_json
from .config import FitConfig
from .evaluate import evaluate_field
from .fields import build_field
from .render.occupancy import OccupancyGrid
from .render.volume import RenderSettings, ray_background, render_rays
from .train_loop import TrainLoop
from .train_state import load_train_state, save_train_state

__all__ = ["fit", "OCCUPANCY", "load_run", "render_settings_from", "make_optimizer", "set_lr", "adapt_batch_rays",
           "restore_field_state"]

OCCUPANCY = "occupancy.safetensors"


def render_settings_from(cfg: dict[str, Any]) -> RenderSettings:
    """RenderSettings stored in a run's config.json (`render` section)."""
    return RenderSettings(step_size=float(cfg.get("render", {}).get("step_size", 0.01)))


def load_run(run: Path, device: torch.device | str = "cpu") -> tuple[Any, OccupancyGrid | None, dict[str, Any]]:
    """Load (field, occupancy grid or None, config) from a run directory, refusing unsafe/NaN weights."""
    field, cfg = load_field(run)
    field = field.to(device).eval()
    grid = None
    occ_path = Path(run) / OCCUPANCY
    if occ_path.is_file():
        t = load_tensors(occ_path)
        grid = OccupancyGrid(field.aabb.cpu(), int(round(t["density"].numel() ** (1 / 3)))).to(device)
        grid.load_state_dict(t)
    return field, grid, cfg


def _all_rays(cams: Cameras) -> tuple[torch.Tensor, torch.Tensor]:
    os_, ds = zip(*(image_rays(cams, i) for i in range(len(cams))), strict=True)
    return torch.cat(os_), torch.cat(ds)


def make_optimizer(field, lr: float) -> torch.optim.Optimizer:
    """Adam (betas 0.9/0.99, eps 1e-15) over the field's parameter groups; each group keeps `base_lr`."""
    groups = field.param_groups(lr)
    for g in groups:
        g["base_lr"] = g["lr"]
    # The fused Adam is several times faster on CPU for the multi-million-parameter grids.
    fused = all(p.device.type in ("cpu", "cuda") and p.dtype == torch.float32 for g in groups for p in g["params"])
    return torch.optim.Adam(groups, betas=(0.9, 0.99), eps=1e-15, fused=fused)


def set_lr(opt: torch.optim.Optimizer, progress: float, step: int, cfg) -> float:
    """Linear warm-up then exponential decay to lr_final at progress 1; returns the peak group's lr."""
    warm = min(1.0, (step + 1) / max(1, cfg.warmup_steps))
    factor = warm * cfg.lr_final ** min(1.0, progress)
    for g in opt.param_groups:
        g["lr"] = g["base_lr"] * factor
    return factor * cfg.lr


def restore_field_state(out: Path, opt: torch.optim.Optimizer, gen: torch.Generator,
                        grid: OccupancyGrid) -> tuple[int, float, int]:
    """--resume: optimizer, RNG and occupancy grid from RUN `out` (written by the same checkpoint);
    returns (step, training seconds so far, rays per step)."""
    meta, _ = load_train_state(out, opt, gen)
    grid.load_state_dict(load_tensors(out / OCCUPANCY))
    return meta["step"], meta["elapsed"], meta["batch_rays"]


def adapt_batch_rays(batch_rays: int, n_samples: int, cfg) -> int:
    """Rays for the next step so that a step holds about cfg.target_samples samples (0: unchanged)."""
    if not cfg.target_samples or n_samples <= 0:
        return batch_rays
    ratio = cfg.target_samples / n_samples
    return int(min(cfg.max_batch_rays, max(256, batch_rays * min(1.5, max(0.67, ratio)))))


def fit(
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
    """Train `cfg.field_name` on `train_ds`, evaluate on `test_ds` (held out), write RUN `out`.

    Returns the metrics dict also written to RUN/metrics.json. `callback(step, record)` is called
    after every step (tests use it to simulate a crash)."""
    tc = cfg.train
    tc.validate()
    out = Path(out)
    torch.manual_seed(tc.seed)
    gen = torch.Generator().manual_seed(tc.seed)
    if resume:
        field, _ = load_field(out)
    else:
        field = build_field({**cfg.field, "field": cfg.field_name, "aabb": train_ds.aabb.tolist()})
    field = field.to(device).train()
    grid = OccupancyGrid(field.aabb.cpu(), tc.occ_resolution).to(device)
    settings = RenderSettings(step_size=tc.step_size, alpha_thre=tc.alpha_thre, early_stop_eps=tc.early_stop_eps)
    eval_settings = RenderSettings(step_size=tc.step_size)
    opt = make_optimizer(field, tc.lr)
    step, elapsed_before, batch_rays = 0, 0.0, tc.batch_rays
    if resume:
        step, elapsed_before, batch_rays = restore_field_state(out, opt, gen, grid)
    run_cfg = {
        "fit": cfg.to_dict(),
        "data": str(data_path) if data_path else None,
        "render": {"step_size": tc.step_size, **orbit_defaults(train_ds.cameras)},
    }

    def checkpoint(at_step: int, elapsed: float) -> None:
        save_train_state(
            out,
            opt,
            {"step": at_step, "elapsed": elapsed, "batch_rays": batch_rays},
            gen,
        )
        save_tensors(out / OCCUPANCY, grid.state_dict())
        save_field(out, field, run_cfg)

    def snapshot(path: Path) -> None:
        save_field(path, field, run_cfg)
        save_tensors(path / OCCUPANCY, grid.state_dict())

    rays_o, rays_d = (t.to(device) for t in _all_rays(train_ds.cameras))
    rgb_all = train_ds.rgb.reshape(-1, 3).to(device)
    alpha_all = train_ds.alpha.reshape(-1, 1).to(device)
    n_pix = rgb_all.shape[0]
    density_thr = -math.log(1.0 - tc.occ_alpha_threshold) / tc.step_size
    loop = TrainLoop(out, cfg.field_name, tc.steps, checkpoint, start_step=step, elapsed_before=elapsed_before,
                     max_seconds=tc.max_seconds, log_every=tc.log_every, checkpoint_every=tc.checkpoint_every,
                     resume=resume, show_progress=show_progress, callback=callback,
                     snapshot=snapshot, snapshot_every=tc.snapshot_every_seconds)
    with loop:
        while loop.running():
            step = loop.step
            if field.on_step(step):
                opt = make_optimizer(field, tc.lr)
            lr = set_lr(opt, loop.progress(), step, tc)
            if step % tc.occ_update_every == 0:
                grid.update(field.density, density_thr, warmup=step < tc.occ_warmup_steps, generator=gen)
            idx = torch.randint(0, n_pix, (batch_rays,), generator=gen).to(device)
            bg = ray_background(tc.background, batch_rays, torch.device(device), gen)
            # index_select: much faster than fancy indexing when the cores are shared
            a = alpha_all.index_select(0, idx)
            target = rgb_all.index_select(0, idx) * a + bg * (1 - a)
            ro, rd = rays_o.index_select(0, idx), rays_d.index_select(0, idx)
            res = render_rays(field, ro, rd, grid, bg, settings, jitter=True, generator=gen,
                              distortion=tc.distortion > 0)
            mse = torch.mean((res["rgb"] - target) ** 2)
            loss = mse + field.regularization()
            if tc.distortion > 0:
                loss = loss + tc.distortion * res["distortion"]
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            n_samples = int(res["n_samples"])
            batch_rays = adapt_batch_rays(batch_rays, n_samples, tc)
            psnr_train = -10 * math.log10(max(mse.item(), 1e-10))
            rec = {"loss": loss.item(), "psnr_train": psnr_train, "lr": lr, "rays": int(idx.numel()),
                   "samples": n_samples, "occupancy": grid.occupancy_fraction()}
            loop.end_step(rec, f"psnr {psnr_train:.2f}  samples {n_samples}")
    step, train_seconds = loop.step, loop.elapsed
    field.eval()
    metrics: dict[str, Any] = {
        "steps": step,
        "seconds": round(train_seconds, 2),
        "field": cfg.field_name,
        "params": sum(p.numel() for p in field.parameters()),
    }
    if test_ds is not None:
        ev = evaluate_field(field, test_ds, grid, eval_settings, tc.eval_background, tc.eval_chunk, out / "renders")
        metrics.update(
            {
                "psnr_test": ev["psnr"],
                "ssim_test": ev["ssim"],
                "n_test_views": ev["n_views"],
                "render_seconds_per_view": ev["render_seconds_per_view"],
            }
        )
    metrics["peak_memory_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    write_json(out / "metrics.json", metrics)
    return metrics
