"""`v3kd fit --field splats`: optimise 3D Gaussian splats on posed images (one full image per step,
L1 + D-SSIM loss, adaptive density control, SH degree schedule). Run by `train.fit.fit` for
`--field splats`: same run directory, metrics and resume contract as the fields.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import torch

from ..checkpoint import load_tensors, save_tensors
from ..errors import ConfigError, RunError
from ..evaluate import held_out_metrics
from ..fields.splats import GaussianSplats
from ..metrics import ssim_tensor
from ..parallel import DistEnv, all_reduce_gradients, all_reduce_sum, shard_range
from ..render.image import ray_cos
from ..render.splat import render_splats
from ..render.volume import ray_background
from ..runs import load_field, save_field
from .config import FitConfig
from .density import DensityController
from .driver import StepResult, TrainTask
from .splat_init import initial_points
from .state import load_train_state, save_train_state

__all__ = ["SplatsTask", "camera_extent", "background_shell", "DENSITY_STATE"]

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


def background_shell(n: int, radius: float, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """`n` points [n,3] spread evenly (Fibonacci lattice, random turn) on a sphere of `radius` (scene units)
    about the origin, grey: the far background of an unbounded scene for splats to start from."""
    k = torch.arange(n, dtype=torch.float64) + 0.5
    z = 1 - 2 * k / n
    phi = k * math.pi * (3 - math.sqrt(5)) + float(torch.rand((), generator=gen, dtype=torch.float64)) * 2 * math.pi
    r = (1 - z * z).sqrt()
    pts = torch.stack([r * phi.cos(), r * phi.sin(), z], -1) * radius
    return pts.float(), torch.full((n, 3), 0.5)


def _init_splats(tc, ds, gen: torch.Generator, sh_degree: int) -> GaussianSplats:
    """Gaussians at the data's sparse points (init auto/points), at random in the box (random or auto
    without points) or from `tc.init` (a run or file); an unbounded scene adds `background_points` on a
    shell at `background_radius` box half-sizes."""
    splats = GaussianSplats(aabb=ds.aabb.tolist(), n=0, sh_degree=sh_degree)
    has_points = getattr(ds, "points", None) is not None
    if tc.init == "points" and not has_points:
        raise ConfigError("train.init=points: this dataset has no sparse points (COLMAP points3D or ply_file_path)")
    if tc.init in ("auto", "points") and has_points:
        keep = torch.randperm(len(ds.points), generator=gen)[: tc.init_points]
        pts, cols = ds.points[keep], ds.point_colors[keep]
    elif tc.init in ("auto", "random"):
        if ds.scene != "unbounded":
            return splats.init_random(tc.init_points, generator=gen, opacity=tc.init_opacity)
        lo, hi = ds.aabb[0], ds.aabb[1]
        pts = lo + torch.rand(tc.init_points, 3, generator=gen) * (hi - lo)
        cols = torch.rand(tc.init_points, 3, generator=gen)
    else:
        pts, cols = initial_points(tc.init, tc.init_points, gen)
    if ds.scene == "unbounded" and tc.background_points > 0:
        half = float((ds.aabb[1] - ds.aabb[0]).max()) / 2
        far, far_cols = background_shell(tc.background_points, tc.background_radius * half, gen)
        pts, cols = torch.cat([pts, far]), torch.cat([cols, far_cols])
    return splats.init_points(pts, cols, opacity=tc.init_opacity, generator=gen)


def _depth_l1(res: dict[str, torch.Tensor], depth: torch.Tensor, alpha: torch.Tensor, cam) -> torch.Tensor:
    """L1 (scene units) between the rendered expected camera z and the target's (ray distance
    `depth` [H,W] -> z), over pixels with alpha > 0.5 and finite depth."""
    solid = (alpha > 0.5) & torch.isfinite(depth)
    if not bool(solid.any()):
        return res["depth"].sum() * 0.0
    target_z = depth.nan_to_num(0.0, posinf=0.0) * ray_cos(cam).to(depth.device)
    return (res["depth"] - target_z).abs()[solid].mean()


class SplatsTask(TrainTask):
    """One step: one training image (views in a shuffled order per epoch), L1 + D-SSIM (+ depth L1) against
    it composited on the training background, then density control."""

    @classmethod
    def build(cls, cfg: FitConfig, train_ds, test_ds, out: Path, resume: bool, generator: torch.Generator,
              run_cfg: dict[str, Any], device: torch.device, dist: DistEnv | None = None) -> SplatsTask:
        """The task for `v3kd fit --field splats`: Gaussians initialised per `cfg.train.init` (or RUN's own
        when resuming). Data-parallel: `train.images_per_step` (the global batch) must be a multiple of the
        number of ranks."""
        tc = cfg.train
        dist = dist or DistEnv()
        if tc.images_per_step % dist.world_size:
            raise ConfigError(f"train.images_per_step={tc.images_per_step} must be a multiple of the {dist.world_size} "
                              "ranks (each renders its share of the step's images)")
        for flag in ("refine_poses", "refine_intrinsics"):  # refused, never ignored
            if getattr(tc, flag):
                raise ConfigError(f"--{flag.replace('_', '-')} applies to fields (hashgrid, mlp); --field splats "
                                  f"does not refine cameras yet")
        if resume:
            splats, _ = load_field(out)
            if not isinstance(splats, GaussianSplats):
                raise RunError(f"{out}: not a splats run")
        else:
            splats = _init_splats(tc, train_ds, generator, int(cfg.field.get("sh_degree", 3)))
        return cls(splats.to(device).train(), train_ds, test_ds, tc, generator, run_cfg, device, dist)

    def __init__(self, splats: GaussianSplats, train_ds, test_ds, tc, generator: torch.Generator,
                 run_cfg: dict[str, Any], device: torch.device, dist: DistEnv | None = None) -> None:
        self.name, self.splats, self.tc, self.gen, self.run_cfg = "fit splats", splats, tc, generator, run_cfg
        self.dist = dist or DistEnv()
        self.train_ds, self.test_ds, self.device = train_ds, test_ds, device
        self.extent = camera_extent(train_ds.cameras.c2w)
        self.opt = _optimizer(splats, tc, self.extent)
        self.density = DensityController(tc, self.extent, unbounded=train_ds.scene == "unbounded")
        self.order: torch.Tensor | None = None  # drawn at the first step of a session, then every epoch

    def _views(self, step: int) -> list[int]:
        """The step's images: the next `images_per_step` of the epoch order (reshuffled at each epoch start)."""
        n_views, k = len(self.train_ds.cameras), self.tc.images_per_step
        if self.order is None:
            self.order = torch.randperm(n_views, generator=self.gen)
        views = []
        for pos in range(step * k, step * k + k):
            if pos % n_views == 0 and pos > 0:
                self.order = torch.randperm(n_views, generator=self.gen)
            views.append(int(self.order[pos % n_views]))
        return views

    def step(self, step: int, progress: float) -> StepResult:
        """One step over the step's images (each rank renders its share); gradients and the densification
        statistics are summed over the ranks, so every rank edits the same Gaussians the same way."""
        tc, gen, splats, ds = self.tc, self.gen, self.splats, self.train_ds
        cams = ds.cameras
        lr_means = tc.lr_means * self.extent * (tc.lr_means_final / tc.lr_means) ** progress
        self.opt.param_groups[0]["lr"] = lr_means
        splats.active_sh_degree.fill_(min(splats.sh_degree, step // tc.sh_degree_every))
        views = self._views(step)
        bgs = ray_background(tc.background, len(views), torch.device("cpu"), gen)
        lo, hi = shard_range(len(views), self.dist)
        loss, sq, renders = 0.0, 0.0, []
        for i, bg in zip(views[lo:hi], bgs[lo:hi], strict=True):
            bg = bg.to(self.device)
            a = ds.opacity[i].to(self.device)
            target = ds.rgb[i].to(self.device) * a + bg * (1 - a)
            res = render_splats(splats, cams[i].to(self.device), bg, backend=tc.backend)
            term = (1 - tc.ssim_lambda) * (res["rgb"] - target).abs().mean()
            if tc.ssim_lambda > 0:
                term = term + tc.ssim_lambda * (1 - ssim_tensor(res["rgb"], target))
            if tc.depth_weight > 0 and ds.depth is not None:
                term = term + tc.depth_weight * _depth_l1(res, ds.depth[i].to(self.device), a[..., 0], cams[i])
            loss = loss + term / len(views)
            sq += float(((res["rgb"].detach() - target) ** 2).mean()) / (hi - lo)
            renders.append(res)
        loss.backward()
        for res in renders:
            self.density.accumulate(res["means2d"], res["visible"], cams.width, cams.height)
        if self.dist.distributed:
            all_reduce_gradients([p for g in self.opt.param_groups for p in g["params"]])
        self.opt.step()
        self.opt.zero_grad(set_to_none=True)
        changed = self.density.step(step + 1, splats, self.opt, gen,
                                    all_reduce_sum if self.dist.distributed else None)
        psnr_train = -10 * math.log10(max(sq, 1e-10))
        rec = {"loss": float(loss) * self.dist.world_size, "psnr_train": psnr_train, "gaussians": splats.n,
               "sh_degree": int(splats.active_sh_degree), "lr_means": lr_means}
        if changed:
            rec["densify"] = changed
        return StepResult(rec, f"psnr {psnr_train:.2f}  gaussians {splats.n}", force_log=bool(changed))

    def save(self, out: Path, meta: dict[str, Any]) -> None:
        save_train_state(out, self.opt, meta, self.gen)
        save_tensors(out / DENSITY_STATE, self.density.state_dict())
        save_field(out, self.splats, self.run_cfg)

    def restore(self, out: Path) -> dict[str, Any]:
        meta, _ = load_train_state(out, self.opt, self.gen)
        if (out / DENSITY_STATE).is_file():
            self.density.load_state_dict(load_tensors(out / DENSITY_STATE, check_finite=False))
        return meta

    def snapshot(self, path: Path) -> None:
        save_field(path, self.splats, self.run_cfg)

    def finish(self, out: Path) -> dict[str, Any]:
        self.splats.eval()
        metrics: dict[str, Any] = {"field": "splats", "gaussians": self.splats.n,
                                   "params": sum(p.numel() for p in self.splats.parameters())}
        if self.test_ds is not None:
            metrics.update(held_out_metrics(self.splats, self.test_ds, None, None, self.tc.eval_background,
                                            save_dir=out / "renders"))
        return metrics
