"""Progressive Volume Distillation (PVD, Fang et al. AAAI 2023) and PVD-AL: convert a fitted field or
splats run (the teacher) into a radiance field of any family (the student) without training images.

Rays come from random virtual cameras around the scene; the student's occupancy grid (the teacher's,
resampled; the student's updates only prune it) chooses the sample points and the teacher is queried at the same points
(occluded ones, by the teacher's transmittance, are dropped). Stages (fractions of the run):
  1. the block: log densities (target clamped to [log_density_min, log_density_max]) and the 15
     geometry features (where the teacher has matter); the colour head is the teacher's copy;
  2. + per-sample colour;
  3. + rendered RGB against the teacher's render of the same samples.
A splats teacher has no per-sample block: its pre-rendered views give per-ray RGB (+ depth) targets.
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from ..cameras import camera_rays, pixel_rays
from ..evaluate import held_out_metrics
from ..fields import build_field
from ..kernels import composite
from ..kernels.composite_ref import composite_weights_ref
from ..render.occupancy import OccupancyGrid, density_for_opacity
from ..render.sampling import sample_along_rays, visible_samples
from ..render.volume import RenderConfig, ray_background, render_rays
from ..runs import load_field
from ..train.config import FitConfig
from ..train.driver import StepResult, make_generator, seeded_init, train
from ..train.field_task import FieldTask
from ..train.loop import LoopConfig
from .active import HardExampleMiner, per_camera_psnr, top_sample_mask, top_share_mask
from .convert_config import ConvertConfig
from .teacher import Teacher, eval_cameras, mean_psnr, render_views, view_rays, virtual_sampler

__all__ = ["convert_to_field", "ConvertTask", "density_loss", "init_student_grid"]


def density_loss(s: Tensor, t: Tensor, lo: float, hi: float) -> Tensor:
    """Per-sample squared error [S] of student log densities `s` against teacher log densities `t`
    clamped to [lo, hi]; zero where the student is already beyond the clamp on the target's side, so
    huge or vanishing teacher densities give finite, bounded losses and no useless gradients."""
    target = t.clamp(lo, hi)
    done = ((t <= lo) & (s <= lo)) | ((t >= hi) & (s >= hi))
    return torch.where(done, torch.zeros_like(s), (s - target) ** 2)


def _mark(grid: OccupancyGrid, pts: Tensor) -> Tensor:
    """bool [R³]: the cells of `grid` holding any of the world points [N,3]."""
    cells, inside = grid.cell_index(pts)
    occ = torch.zeros(grid.resolution**3, dtype=torch.bool, device=pts.device)
    occ[cells[inside]] = True
    return occ


@torch.no_grad()
def init_student_grid(teacher: Teacher, aabb: Tensor, resolution: int, threshold: float,
                      gen: torch.Generator, contract: bool = False) -> OccupancyGrid:
    """Occupancy grid over `aabb` where the teacher renders: a field teacher's own trained grid resampled
    (a cell is occupied if it holds an occupied teacher cell's centre or its centre lies in one; two
    fresh refreshes of the teacher's density when the run has no grid: one random point per cell
    misses thin surfaces), or, for splats, the cells holding a Gaussian centre with opacity > 0.01,
    dilated by one cell."""
    grid = OccupancyGrid(aabb.cpu(), resolution, contract=contract).to(aabb.device)
    if teacher.kind == "field" and teacher.grid is None:
        for _ in range(2):
            grid.update(teacher.model.density, threshold, warmup=True, generator=gen)
        return grid
    if teacher.kind == "field":
        t_grid = teacher.grid
        occ = _mark(grid, t_grid.cell_centres()[t_grid.binary]) | t_grid.occupied(grid.cell_centres())
    else:
        splats = teacher.model
        keep = torch.sigmoid(splats.opacity_logits.reshape(-1)) > 0.01
        occ = _mark(grid, splats.means[keep]).float()
        occ = F.max_pool3d(occ.reshape(1, 1, *(resolution,) * 3), 3, stride=1, padding=1).reshape(-1) > 0
    grid.density.copy_(occ.float() * threshold * 20)
    grid.binary.copy_(occ)
    return grid


def _color_compatible(student, teacher: Teacher) -> bool:
    t = teacher.model
    return (teacher.kind == "field" and student.geo_features == t.geo_features and student.sh_degree == t.sh_degree
            and [p.shape for p in student.color_net.parameters()] == [p.shape for p in t.color_net.parameters()])


class _Rays:
    """One step's rays: rays_o/rays_d [R,3], per-ray background, fixed targets (rgb [R,3], opacity,
    depth [R]) where known (splat views, real images; NaN rows for field-teacher rays), camera of ray."""

    def __init__(self, o: Tensor, d: Tensor, rgb: Tensor, opacity: Tensor, depth: Tensor, cam: Tensor) -> None:
        self.o, self.d, self.rgb, self.opacity, self.depth, self.cam = o, d, rgb, opacity, depth, cam

    @staticmethod
    def cat(parts: list[_Rays]) -> _Rays:
        return _Rays(*(torch.cat([getattr(p, k) for p in parts]) for k in ("o", "d", "rgb", "opacity", "depth", "cam")))


def _unknown(n: int) -> tuple[Tensor, Tensor, Tensor]:
    nan = torch.full((n,), float("nan"))
    return torch.full((n, 3), float("nan")), nan, nan.clone()


class _RaySource:
    """Draws each step's rays: virtual cameras (mined when active), re-used hard rays, real pixels."""

    def __init__(self, teacher: Teacher, cfg: ConvertConfig, views, train_ds, device) -> None:
        self.cfg, self.views, self.train_ds, self.device = cfg, views, train_ds, device
        self.sampler = virtual_sampler(teacher, cfg)
        self.miner = HardExampleMiner(self.sampler, cfg.camera_pool, cfg.hard_camera_fraction,
                                      cfg.camera_jitter_deg, cfg.hard_ray_fraction) if cfg.active else None
        self.params: dict[str, Tensor] | None = None

    def draw(self, n: int, gen: torch.Generator) -> _Rays:
        parts: list[_Rays] = []
        n_real = int(self.cfg.real_ray_fraction * n) if self.train_ds is not None else 0
        if n_real:
            ds = self.train_ds
            flat = torch.randint(0, ds.rgb[..., 0].numel(), (n_real,), generator=gen)
            h, w = ds.height, ds.width
            cam, rem = flat // (h * w), flat % (h * w)
            o, d = pixel_rays(ds.cameras, cam, rem % w, rem // w)
            a = ds.opacity.reshape(-1).index_select(0, flat)
            rgb = ds.rgb.reshape(-1, 3).index_select(0, flat) * a[:, None]  # premultiplied (black background)
            parts.append(_Rays(o, d, rgb, a, torch.full((n_real,), float("nan")), torch.full((n_real,), -1)))
        hard = self.miner.take_rays() if self.miner is not None else None
        if hard is not None:
            parts.append(_Rays(hard[0], hard[1], *_unknown(hard[0].shape[0]), torch.full((hard[0].shape[0],), -1)))
        n_virtual = max(1, n - sum(p.o.shape[0] for p in parts))
        if self.views is not None:  # splats teacher: pixels of its pre-rendered views
            idx = torch.randint(0, self.views.opacity.numel(), (n_virtual,), generator=gen)
            o, d, rgb, opacity, depth = view_rays(self.views, idx)
            parts.append(_Rays(o, d, rgb, opacity, depth, torch.full((n_virtual,), -1)))
        else:
            k = self.cfg.cams_per_step
            if self.miner is not None:
                cams, self.params = self.miner.cameras(k, gen)
            else:
                cams = self.sampler.sample(k, gen)
            cam = torch.randint(0, k, (n_virtual,), generator=gen)
            px = torch.rand(n_virtual, generator=gen) * cams.width
            py = torch.rand(n_virtual, generator=gen) * cams.height
            o, d = camera_rays(cams, cam, px, py)
            parts.append(_Rays(o, d, *_unknown(n_virtual), cam))
        rays = _Rays.cat(parts)
        return _Rays(*(t.to(self.device) for t in (rays.o, rays.d, rays.rgb, rays.opacity, rays.depth)), rays.cam)

    def feedback(self, rays: _Rays, err: Tensor, n: int) -> None:
        """PVD-AL: per-ray errors [R] update the hard camera pool and hard rays."""
        if self.miner is None:
            return
        self.miner.update_rays(rays.o, rays.d, err, n)
        if self.params is not None:
            virt = rays.cam >= 0
            if virt.any():
                psnrs = per_camera_psnr(err[virt.to(err.device)], rays.cam[virt], self.cfg.cams_per_step)
                self.miner.update_cameras(self.params, psnrs)


def _masked_mean(values: Tensor, weights: Tensor) -> Tensor:
    return (values * weights).sum() / weights.sum().clamp_min(1e-6)


def _sample_weights(t_sigma: Tensor, s_logs: Tensor, t_s: Tensor, t_e: Tensor, ray_i: Tensor, n: int,
                    cfg: ConvertConfig) -> Tensor:
    """Per-sample weights [S] of the block and colour losses: 1, or PVD-AL's sample rule (distill/active.py)."""
    w = torch.ones_like(t_sigma)
    if not cfg.active or not ray_i.numel():
        return w
    t_w = composite_weights_ref(t_sigma, t_s, t_e, ray_i, n)
    if cfg.al_samples == "boost":
        return w + cfg.top_sample_boost * top_sample_mask(t_w, ray_i, n, cfg.top_samples).float()
    with torch.no_grad():
        s_w = composite_weights_ref(torch.exp(s_logs.detach().clamp(max=15.0)), t_s, t_e, ray_i, n)
    keep = [top_share_mask(x, ray_i, n, cfg.top_share, cfg.min_ray_weight) for x in (t_w, s_w)]
    return (keep[0] | keep[1]).float()


def _term(sq: Tensor, channels: int, weights: Tensor, form: str) -> Tensor:
    """One loss term from per-sample (or per-ray) squared errors summed over `channels` channels [N]: their
    weighted mean per channel ("mse"), or the L2 norm of the weighted differences ("norm")."""
    if form == "norm":
        return (sq * weights).sum().clamp_min(1e-12).sqrt()
    return _masked_mean(sq / channels, weights)


def _step_losses(student, teacher: Teacher, rays: _Rays, bg: Tensor, grid: OccupancyGrid, cfg: ConvertConfig,
                 stage: int, step_size: float, feats: bool, gen: torch.Generator,
                 step: int = 0) -> tuple[Tensor, dict, Tensor, int]:
    """Field teacher: (loss, parts, per-ray error [R], samples) of one batch at `stage` (1, 2 or 3); parts
    also carries `rgb_mse` (stage 3, detached: the rendered colour's mean squared error, for PSNR)."""
    n = rays.o.shape[0]
    samples = sample_along_rays(rays.o, rays.d, grid.aabb, step_size, grid, 0.0, True, gen)
    t_logs, t_geo = teacher.block(samples.points)  # one teacher pass: occlusion test and targets
    t_sigma = torch.exp(t_logs.clamp(max=30.0))
    keep = visible_samples(samples, t_sigma, n)
    samples = samples.select(keep)
    t_logs, t_geo, t_sigma = (t.index_select(0, keep) for t in (t_logs, t_geo, t_sigma))
    ray_i, t_s, t_e, pts = samples.ray_indices, samples.t_starts, samples.t_ends, samples.points
    t_rgb = teacher.color(t_geo, rays.d, ray_i)
    lo, hi = cfg.log_density_min, cfg.log_density_max
    s_logs, s_geo = student.block(pts)
    w = _sample_weights(t_sigma, s_logs, t_s, t_e, ray_i, n, cfg)
    form = cfg.loss_form
    d_sq = density_loss(s_logs, t_logs, lo, hi)
    per_sample = cfg.density_weight * d_sq
    parts = {"density": cfg.density_weight * _term(d_sq, 1, w, form)}
    matter = w * (t_logs > lo).float()
    f_weight = cfg.feature_weight * cfg.feature_decay ** step
    if feats and f_weight > 0:
        f_sq = ((s_geo - t_geo) ** 2).sum(-1)
        per_sample = per_sample + f_weight * f_sq / s_geo.shape[-1] * (t_logs > lo).float()
        parts["feature"] = f_weight * _term(f_sq, s_geo.shape[-1], matter, form)
    loss = sum(parts.values())
    ray_err = torch.zeros(n, device=rays.o.device).index_add_(0, ray_i, per_sample.detach())
    if stage >= 2:
        s_rgb_s = student.color_from_dirs(s_geo, student.encode_dirs(rays.d).index_select(0, ray_i))
        parts["color"] = cfg.color_weight * _term(((s_rgb_s - t_rgb) ** 2).sum(-1), 3, matter, form)
        loss = loss + parts["color"]
    if stage >= 3 and ray_i.numel():
        s_rgb, s_opacity, _ = composite(torch.exp(s_logs.clamp(max=15.0)), s_rgb_s, t_s, t_e, ray_i, n)
        with torch.no_grad():
            t_rgb_r, t_opacity, _ = composite(t_sigma, t_rgb, t_s, t_e, ray_i, n)
        known = ~torch.isnan(rays.opacity)  # real pixels: their own colour
        target = torch.where(known[:, None], rays.rgb.nan_to_num(0), t_rgb_r)
        t_opacity = torch.where(known, rays.opacity.nan_to_num(0), t_opacity)
        target = target + (1 - t_opacity[:, None]) * bg
        ray_sq = ((s_rgb + (1 - s_opacity[:, None]) * bg - target) ** 2).sum(-1)
        parts["rgb"] = cfg.rgb_weight * _term(ray_sq, 3, torch.ones_like(ray_sq), form)
        loss = loss + parts["rgb"]
        ray_err = ray_sq.detach() / 3
        parts["rgb_mse"] = ray_err.mean()
    return loss, parts, ray_err, int(ray_i.numel())


def _render_losses(student, rays: _Rays, bg: Tensor, grid: OccupancyGrid, cfg: ConvertConfig,
                   settings: RenderConfig, gen: torch.Generator) -> tuple[Tensor, dict, Tensor, int]:
    """Splats teacher: rendered RGB against its views (+ depth where it is opaque)."""
    res = render_rays(student, rays.o, rays.d, grid, bg, settings, jitter=True, generator=gen)
    target = rays.rgb + (1 - rays.opacity[:, None]) * bg
    ray_err = ((res["rgb"] - target) ** 2).mean(-1)
    parts = {"rgb": cfg.rgb_weight * ray_err.mean()}
    if cfg.depth_weight > 0:
        solid = (rays.opacity > 0.5) & torch.isfinite(rays.depth)
        d_err = (res["depth"] - rays.depth.nan_to_num(0) * rays.opacity).abs()  # both opacity-weighted ray distances
        parts["depth"] = cfg.depth_weight * _masked_mean(d_err, solid.float())
    loss = sum(parts.values())
    parts["rgb_mse"] = ray_err.detach().mean()  # logged, not optimised
    return loss, parts, ray_err.detach(), int(res["n_samples"])


def _stage(progress: float, cfg: ConvertConfig) -> int:
    return 1 if progress < cfg.stage1_end else 2 if progress < cfg.stage2_end else 3


class ConvertTask(FieldTask):
    """One PVD step: rays from the source, the stage's block / colour / RGB losses against the teacher at
    the same samples (a splats teacher: rendered RGB + depth against its views), an Adam step."""

    def __init__(self, teacher: Teacher, student, cfg: ConvertConfig, fit_cfg: FitConfig, train_ds, test_ds,
                 generator: torch.Generator, run_cfg: dict[str, Any], device: torch.device, copy_head: bool) -> None:
        tc = fit_cfg.train
        self.feats = _color_compatible(student, teacher)
        if self.feats and cfg.copy_color_head and copy_head:
            student.color_net.load_state_dict(teacher.model.color_net.state_dict())
        # The student's grid starts from the teacher's and its updates (from the student's density) may
        # only prune: an untrained student's density would otherwise fill the grid and multiply the
        # samples (tensorf-vm -> hashgrid on lego: 93 samples per ray, 2.9 s per step).
        grid = init_student_grid(teacher, student.aabb, tc.occ_resolution,
                                 density_for_opacity(tc.occ_opacity_threshold, tc.step_size), generator,
                                 contract=student.contract)
        super().__init__(f"{teacher.model.name}->{student.name}", student, grid, tc, generator, run_cfg)
        self.teacher, self.cfg, self.test_ds, self.device = teacher, cfg, test_ds, device
        self.allowed = grid.binary.clone()
        views = None
        if teacher.kind == "splats":
            cams = virtual_sampler(teacher, cfg).sample(cfg.virtual_views, generator)
            views = render_views(teacher.model, None, None, cams, background="black")
        self.eval_cams = eval_cameras(teacher, cfg)
        self.eval_ref = render_views(teacher.model, teacher.grid, teacher.settings, self.eval_cams)
        self.source = _RaySource(teacher, cfg, views, train_ds, device)
        self.psnr_ema = 0.0

    def step(self, step: int, progress: float) -> StepResult:
        tc, cfg, gen, teacher, grid = self.tc, self.cfg, self.gen, self.teacher, self.grid
        stage = _stage(progress, cfg) if teacher.kind == "field" else 3
        lr = self.schedule_step(step, progress)
        if stage >= 2 and step % tc.occ_update_every == 0:
            grid.update(self.field.density, self.density_threshold, generator=gen)
            grid.binary &= self.allowed
        rays = self.source.draw(self.batch_rays, gen)
        bg = ray_background(tc.background, rays.o.shape[0], self.device, gen)
        if teacher.kind == "field":
            loss, parts, ray_err, n_samples = _step_losses(self.field, teacher, rays, bg, grid, cfg, stage,
                                                           tc.step_size, self.feats, gen, step)
        else:
            loss, parts, ray_err, n_samples = _render_losses(self.field, rays, bg, grid, cfg, self.settings, gen)
        loss = loss + self.field.regularization()
        batch_rays = self.batch_rays
        self.optimise(loss, n_samples)
        self.source.feedback(rays, ray_err, batch_rays)
        rec = {"loss": loss.item(), "stage": stage, "lr": lr, "rays": int(rays.o.shape[0]), "samples": n_samples,
               **{k: float(v.detach()) for k, v in parts.items()}}
        if "rgb_mse" in parts:
            rec["psnr_vs_teacher"] = -10 * math.log10(max(float(parts["rgb_mse"]), 1e-10))
            ema = self.psnr_ema
            self.psnr_ema = rec["psnr_vs_teacher"] if not ema else 0.9 * ema + 0.1 * rec["psnr_vs_teacher"]
        info = f"stage {stage}" + (f"  PSNR vs teacher {self.psnr_ema:.2f}" if self.psnr_ema else "")
        return StepResult(rec, info)

    def finish(self, out: Path) -> dict[str, Any]:
        student, tc = self.field.eval(), self.tc
        # The grid stays as trained: a fresh one from the student's density would also mark its untrained
        # noise in cells the teacher left empty (never sampled, so never corrected) as occupied.
        eval_settings = RenderConfig(step_size=tc.step_size)
        pred = render_views(student, self.grid, eval_settings, self.eval_cams)
        metrics: dict[str, Any] = {
            "field": student.name, "teacher": self.teacher.model.name, "active": self.cfg.active,
            "params": sum(p.numel() for p in student.parameters()),
            "psnr_vs_teacher": mean_psnr(pred, self.eval_ref), "n_teacher_views": len(self.eval_cams)}
        if self.test_ds is not None:
            metrics.update(held_out_metrics(student, self.test_ds, self.grid, eval_settings, tc.eval_background,
                                            tc.eval_chunk, out / "renders"))
        return metrics


def convert_to_field(teacher: Teacher, student_name: str, out: Path, cfg: ConvertConfig, fit_cfg: FitConfig,
                     train_ds=None, test_ds=None, resume: bool = False, device: torch.device | str = "cpu",
                     rank: int = 0, show_progress: bool = True, callback=None) -> dict[str, Any]:
    """Distil `teacher` into a new field of family `student_name` written to run directory `out`.

    train_ds (optional) mixes real pixels into the batches; test_ds (optional, held out) gives
    psnr_test. Returns the metrics also written to RUN/metrics.json (psnr_vs_teacher: held-out virtual
    views; prepare_seconds: time spent before the first step, e.g. rendering a splat teacher's views)."""
    t_prep = time.perf_counter()
    tc, out, dev = fit_cfg.train, Path(out), torch.device(device)
    gen = make_generator(tc.seed)
    if resume:
        student, _ = load_field(out)
    else:
        with seeded_init(tc.seed):
            # the teacher's box, and its contraction when it models an unbounded capture
            contract = {"contract": True} if getattr(teacher.model, "contract", False) else {}
            student = build_field({**fit_cfg.field, "field": student_name, "aabb": teacher.aabb.cpu().tolist(),
                                   **contract})
    run_cfg = {"convert": {"teacher": str(teacher.path), "teacher_field": teacher.model.name, **asdict(cfg)},
               "fit": fit_cfg.to_dict(), "data": teacher.config.get("data"), "frame": teacher.config.get("frame"),
               "render": {**teacher.config["render"], "step_size": tc.step_size,
                          "elevation_range_deg": list(teacher.elevation_range)}}
    task = ConvertTask(teacher, student.to(dev).train(), cfg, fit_cfg, train_ds, test_ds, gen, run_cfg, dev,
                       copy_head=not resume)
    prepare = {"prepare_seconds": round(time.perf_counter() - t_prep, 2)}
    return train(task, out, LoopConfig.of(tc), resume=resume, rank=rank, show_progress=show_progress,
                 callback=callback, metrics=prepare)
