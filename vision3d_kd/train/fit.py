"""`v3kd fit`: optimise a radiance field on posed images with occupancy-grid ray marching (Gaussian
splats: `splats.py`); `fit_dataset` fits a dataset folder with its held-out split (what the command does).

Run by the training driver (`driver.py`): no global state, a device and rank from the caller, a run
directory that `--resume` continues from the last checkpoint.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from ..cameras import Cameras, camera_rays, image_rays, orbit_defaults
from ..checkpoint import write_json
from ..data import held_out_split, load_dataset
from ..errors import ConfigError
from ..evaluate import held_out_metrics
from ..fields import build_field
from ..parallel import DistEnv, barrier, shard_range
from ..render.intrinsics_adjust import INTRINSICS_FILE, IntrinsicsAdjustment
from ..render.occupancy import OccupancyGrid
from ..render.pose_adjust import PoseAdjustment
from ..render.sampling import ray_jitter
from ..render.volume import RenderConfig, ray_background, render_rays
from ..runs import load_field
from .config import FitConfig
from .driver import StepResult, make_generator, seeded_init, train
from .field_task import FieldTask
from .loop import LoopConfig
from .splats import SplatsTask

__all__ = ["fit", "FitTask", "fit_dataset", "default_run_dir", "CONTRACTING"]

CONTRACTING = ("hashgrid", "grid", "tensorf-vm", "tensorf-cp", "mlp")  # field families with scene contraction
POSE_GRADIENT = ("hashgrid", "mlp")  # field families whose encodings pass a gradient to the sample positions


def _all_rays(cams: Cameras) -> tuple[torch.Tensor, torch.Tensor]:
    os_, ds = zip(*(image_rays(cams, i) for i in range(len(cams))), strict=True)
    return torch.cat(os_), torch.cat(ds)


def _field_options(cfg: FitConfig, train_ds) -> dict[str, Any]:
    """The field's config: the YAML/--set options, the data's box and, for an unbounded scene, contraction
    (the box is then the foreground; everything beyond it is contracted into the field)."""
    options = {**cfg.field, "field": cfg.field_name, "aabb": train_ds.aabb.tolist()}
    if train_ds.scene == "unbounded":
        if cfg.field_name not in CONTRACTING:
            raise ConfigError(f"--field {cfg.field_name} has no scene contraction for this unbounded capture; "
                              f"use one of {', '.join(CONTRACTING)} or --scene bounded")
        options["contract"] = True
    return options


class FitTask(FieldTask):
    """One step: a batch of random training pixels, MSE of the rendered colour (+ field regulariser, +
    distortion loss) against the pixel composited on the training background."""

    @classmethod
    def build(cls, cfg: FitConfig, train_ds, test_ds, out: Path, resume: bool, generator: torch.Generator,
              run_cfg: dict[str, Any], device: torch.device, dist: DistEnv | None = None) -> FitTask:
        """The task for `v3kd fit --field F`: a new field of `cfg` over the data's box (RUN's when resuming)."""
        if resume:
            field, _ = load_field(out)
        else:
            with seeded_init(cfg.train.seed):
                field = build_field(_field_options(cfg, train_ds))
        return cls(field.to(device).train(), train_ds, test_ds, cfg.train, generator, run_cfg, device, dist)

    def __init__(self, field, train_ds, test_ds, tc, generator: torch.Generator, run_cfg: dict[str, Any],
                 device: torch.device, dist: DistEnv | None = None) -> None:
        grid = OccupancyGrid(field.aabb.cpu(), tc.occ_resolution, contract=field.contract).to(device)
        name = run_cfg["fit"]["field_name"]
        for flag in ("refine_poses", "refine_intrinsics"):
            if getattr(tc, flag) and name not in POSE_GRADIENT:
                raise ConfigError(f"--{flag.replace('_', '-')} needs a field whose encoding has a gradient to "
                                  f"positions ({', '.join(POSE_GRADIENT)}); --field {name} has none")
        self.poses = PoseAdjustment(len(train_ds.cameras)).to(device) if tc.refine_poses else None
        self.intrinsics = None
        if tc.refine_intrinsics:
            self.intrinsics = IntrinsicsAdjustment.from_cameras(train_ds.cameras).to(device)
        extra = {}
        if self.poses is not None:
            extra["pose_delta"] = (self.poses.delta, tc.pose_lr)
        if self.intrinsics is not None:
            extra["intrinsics_delta"] = (self.intrinsics.delta, tc.pose_lr)
        super().__init__(f"fit {name}", field, grid, tc, generator, run_cfg, extra, dist)
        self.cams = train_ds.cameras.to(device)
        self.pixels_per_image = train_ds.cameras.width * train_ds.cameras.height
        self.test_ds, self.device = test_ds, device
        self.rays_o, self.rays_d = (t.to(device) for t in _all_rays(train_ds.cameras))
        self.rgb = train_ds.rgb.reshape(-1, 3).to(device)
        self.opacity = train_ds.opacity.reshape(-1, 1).to(device)

    def step(self, step: int, progress: float) -> StepResult:
        tc, gen, grid = self.tc, self.gen, self.grid
        lr = self.schedule_step(step, progress)
        if step % tc.occ_update_every == 0:
            grid.update(self.field.density, self.density_threshold, warmup=step < tc.occ_warmup_steps, generator=gen)
        idx = torch.randint(0, self.rgb.shape[0], (self.batch_rays,), generator=gen).to(self.device)
        bg = ray_background(tc.background, self.batch_rays, self.device, gen)
        loss, mse, n_samples = self.batch_loss(idx, bg, progress)
        n_samples = self.optimise(loss, n_samples)
        psnr_train = -10 * math.log10(max(mse, 1e-10))
        rec = {"loss": loss.item(), "psnr_train": psnr_train, "lr": lr, "rays": int(idx.numel()),
               "samples": n_samples, "occupancy": grid.occupancy_fraction()}
        return StepResult(rec, f"psnr {psnr_train:.2f}  samples {n_samples}")

    def batch_loss(self, idx: torch.Tensor, bg: torch.Tensor, progress: float, jitter: bool = True
                   ) -> tuple[torch.Tensor, float, int]:
        """(loss, this rank's MSE, its samples) on the global batch of training pixels `idx` [R] with
        backgrounds [R,3]: this rank renders its contiguous share (all of it in one process) and its loss is
        scaled by that share, so the ranks' gradients sum to the gradient of the whole batch's loss. Every rank
        draws the whole batch's sample jitter from the shared generator (`ray_jitter`, the draws one process
        makes) and uses its rows: the samples do not depend on the number of ranks."""
        tc, n = self.tc, int(idx.numel())
        lo, hi = shard_range(n, self.dist)
        offsets = ray_jitter(n, bool(self.field.contract), self.gen, self.device)[lo:hi] if jitter else False
        idx, bg = idx[lo:hi], bg[lo:hi]
        share = (hi - lo) / n
        # index_select: much faster than fancy indexing when the cores are shared
        a = self.opacity.index_select(0, idx)
        target = self.rgb.index_select(0, idx) * a + bg * (1 - a)
        ro, rd = self._rays(idx, frozen=progress >= tc.pose_refine_until)
        res = render_rays(self.field, ro, rd, self.grid, bg, self.settings, jitter=offsets,
                          distortion=tc.distortion > 0)
        mse = torch.mean((res["rgb"] - target) ** 2)
        loss = share * mse + self.field.regularization() / self.dist.world_size
        if tc.distortion > 0:
            loss = loss + tc.distortion * share * res["distortion"]
        return loss, float(mse.item()), int(res["n_samples"])

    def _rays(self, idx: torch.Tensor, frozen: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
        """Rays [R,3] of the training pixels `idx` (image-major flat indices), through the refined cameras;
        `frozen`: the corrections get no gradient (nor does the field's encoding towards the positions, the
        cost of refining)."""
        if self.poses is None and self.intrinsics is None:
            return self.rays_o.index_select(0, idx), self.rays_d.index_select(0, idx)
        if frozen:
            with torch.no_grad():
                return self._rays(idx)
        image = torch.div(idx, self.pixels_per_image, rounding_mode="floor")
        if self.intrinsics is None:
            ro, rd = self.rays_o.index_select(0, idx), self.rays_d.index_select(0, idx)
        else:
            pixel = idx - image * self.pixels_per_image
            row = torch.div(pixel, self.cams.width, rounding_mode="floor")
            px, py = (pixel - row * self.cams.width).float() + 0.5, row.float() + 0.5
            ro, rd = camera_rays(self.intrinsics(self.cams), image, px, py)
        return (ro, rd) if self.poses is None else self.poses(ro, rd, image)

    def finish(self, out: Path) -> dict[str, Any]:
        self.field.eval()
        metrics: dict[str, Any] = {"field": self.run_cfg["fit"]["field_name"],
                                   "params": sum(p.numel() for p in self.field.parameters())}
        if self.poses is not None:
            metrics.update(self.poses.summary())
        test_ds = self.test_ds
        if self.intrinsics is not None:
            metrics.update(self.intrinsics.summary())
            write_json(out / INTRINSICS_FILE, self.intrinsics.to_dict())
            if test_ds is not None:  # held-out images of the same cameras get the same correction
                test_ds = self.intrinsics.corrected(test_ds)
        if test_ds is not None:
            eval_cfg = RenderConfig(step_size=self.tc.step_size)
            metrics.update(held_out_metrics(self.field, test_ds, self.grid, eval_cfg, self.tc.eval_background,
                                            self.tc.eval_chunk, out / "renders", self.tc.align_steps()))
        return metrics


def fit(train_ds, test_ds, out: Path, cfg: FitConfig, data_path: Path | None = None, resume: bool = False,
        device: torch.device | str = "cpu", dist: DistEnv | None = None, show_progress: bool = True,
        callback: Callable[[int, dict[str, float]], None] | None = None) -> dict[str, Any]:
    """Train `cfg.field_name` (a field family or "splats") on `train_ds`, evaluate on `test_ds` (held out),
    write RUN `out`.

    Returns the metrics also written to RUN/metrics.json. `callback(step, record)` is called after every
    step (tests use it to simulate a crash). `dist`: this rank's place in a data-parallel run (torchrun);
    only rank 0 writes."""
    tc = cfg.train
    tc.validate()
    out, dev = Path(out), torch.device(device)
    gen = make_generator(tc.seed)
    render = orbit_defaults(train_ds.cameras)
    if cfg.field_name != "splats":
        render = {"step_size": tc.step_size, **render}
    frame = {"transform": train_ds.transform.tolist(), "scene": train_ds.scene}
    run_cfg = {"fit": cfg.to_dict(), "data": str(data_path) if data_path else None, "render": render, "frame": frame}
    build = SplatsTask.build if cfg.field_name == "splats" else FitTask.build
    dist = dist or DistEnv()
    task = build(cfg, train_ds, test_ds, out, resume, gen, run_cfg, dev, dist)
    return train(task, out, LoopConfig.of(tc), resume=resume, rank=dist.rank, show_progress=show_progress,
                 callback=callback)


def default_run_dir(data: Path, field_name: str) -> Path:
    """runs/<dataset folder name>-<field> (relative to the working directory)."""
    return Path("runs") / f"{Path(data).name}-{field_name}"


def fit_dataset(data: Path, out: Path, cfg: FitConfig, resume: bool = False, device: torch.device | str = "cpu",
                dist: DistEnv | None = None, show_progress: bool = True,
                log: Callable[[str], None] | None = None) -> tuple[str | None, dict[str, Any]]:
    """`fit` on the train split of dataset folder `data` (at `cfg.train.downscale`), scored on its held-out
    split (test, else val; none: no held-out metrics). `out` must be new or empty unless `resume`. `log`
    gets a warning line when nothing is held out and a one-line summary before training.
    Returns (the held-out split or None, the metrics also in RUN/metrics.json)."""
    out = Path(out)
    if not resume and out.exists() and any(out.iterdir()):
        raise ConfigError(f"{out}: already exists and is not empty (use --resume or another --out)")
    barrier()  # data-parallel: every rank has looked at `out` before rank 0 writes into it
    cfg.train.validate()
    train_ds = load_dataset(data, "train", **cfg.train.load_options())
    split = held_out_split(data)
    test_ds = load_dataset(data, split, **cfg.train.load_options()) if split else None
    if log is not None:
        if test_ds is None:
            log(f"warning: {data} has no test or val split; no held-out metrics")
        kind = f"{train_ds.scene} scene"
        if train_ds.scene == "unbounded":
            kind += ", background shell" if cfg.field_name == "splats" else ", contracted"
        log(f"fit {cfg.field_name} on {data} ({len(train_ds.cameras)} train views"
            f"{f', {len(test_ds.cameras)} {split} views' if test_ds else ''}, {kind}) -> {out}")
    metrics = fit(train_ds, test_ds, out, cfg, data_path=Path(data).resolve(), resume=resume, device=device,
                  dist=dist, show_progress=show_progress)
    return split, metrics
