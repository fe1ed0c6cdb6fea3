"""Settings of `v3kd fit`: `TrainConfig` (fields), `SplatTrainConfig` (Gaussian splats) and `FitConfig`
(the model's options + one of those), read from `vision3d_kd/configs/<field>.yaml` and `--set` overrides.

A YAML file has two sections: `field:` (the model's options) and `train:` (the training dataclass).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..checkpoint import read_config
from ..config import CONFIG_DIR, dataclass_from, parse_overrides, read_sections
from ..errors import ConfigError, RunError

__all__ = ["TrainConfig", "SplatTrainConfig", "FitConfig", "train_config_class", "load_fit_config",
           "saved_fit_config", "apply_overrides"]


SCENES = ("auto", "bounded", "unbounded")


@dataclass
class DataOptions:
    """How `v3kd fit` reads its dataset (both training dataclasses have these): an integer image
    `downscale`, `undistort` (False ignores a capture's lens distortion; for comparison only) and `scene`
    (auto: what the loader infers; bounded; unbounded: the field contracts everything outside the box)."""

    downscale: int = 1
    undistort: bool = True
    scene: str = "auto"

    def load_options(self) -> dict[str, Any]:
        """Keyword arguments of `data.load_dataset`."""
        return {"downscale": self.downscale, "undistort": self.undistort, "scene": self.scene}

    def validate_data(self) -> None:
        if int(self.downscale) <= 0:
            raise ConfigError(f"train.downscale must be > 0, got {self.downscale}")
        if self.scene not in SCENES:
            raise ConfigError(f"train.scene must be one of {', '.join(SCENES)}, got {self.scene!r}")


@dataclass
class CameraOptions(DataOptions):
    """The data options plus the camera corrections both training dataclasses have: per-image pose and
    per-camera intrinsics refinement during training, and test-time alignment of held-out cameras."""

    refine_poses: bool = False  # learn a rotation + translation per training image (poses from SfM / phones)
    refine_intrinsics: bool = False  # learn focal scale + principal point per camera (SfM intrinsics; fields)
    pose_lr: float = 1e-3  # peak learning rate of those corrections (radians, scene units); same schedule as lr
    pose_refine_until: float = 1.0  # training progress (0-1 of steps or budget) after which they are frozen
    eval_align_steps: int = -1  # held-out cameras aligned to their images before a 2nd score (-1: 100 if refine_poses)

    def align_steps(self) -> int:
        """Test-time alignment steps for the held-out scores (0 = none)."""
        return (100 if self.refine_poses else 0) if self.eval_align_steps < 0 else int(self.eval_align_steps)

    def validate_cameras(self) -> None:
        """Raise ConfigError for out-of-range data or camera options."""
        self.validate_data()
        if not self.pose_lr > 0:
            raise ConfigError(f"train.pose_lr must be > 0, got {self.pose_lr}")
        if not 0 < self.pose_refine_until <= 1:
            raise ConfigError(f"train.pose_refine_until must be in (0, 1], got {self.pose_refine_until}")


@dataclass
class TrainConfig(CameraOptions):
    """Optimisation and sampling settings of `v3kd fit` (distances in scene units)."""

    steps: int = 3000  # optimisation steps
    batch_rays: int = 4096  # rays per step at the start (adapted when target_samples > 0)
    target_samples: int = 0  # adapt rays per step so each step has about this many samples (0 = off)
    max_batch_rays: int = 16384
    lr: float = 1e-2  # peak learning rate (fields may scale it per parameter group)
    lr_final: float = 0.03  # final learning rate as a fraction of lr (exponential decay)
    warmup_steps: int = 50  # linear warm-up of the learning rate
    step_size: float = 0.01  # ray-marching step (scene units)
    opacity_min: float = 0.0  # training: drop samples whose opacity is below this (0 keeps a fresh field trainable)
    early_stop_eps: float = 1e-4  # training: drop samples behind an opaque surface (transmittance below this)
    occ_resolution: int = 128  # occupancy grid cells per axis
    occ_update_every: int = 16  # steps between occupancy refreshes
    occ_warmup_steps: int = 256  # steps during which every cell is refreshed
    occ_opacity_threshold: float = 0.01  # a cell is empty when a step through it has opacity below this
    distortion: float = 0.0  # weight of the Mip-NeRF 360 distortion loss (sharpens surfaces; 0 = off)
    background: str = "random"  # training background: random, white or black
    eval_background: str = "white"  # background of evaluation renders and targets
    checkpoint_every: int = 500  # steps between checkpoints (weights + optimizer state)
    log_every: int = 25  # steps between log.jsonl records
    seed: int = 0
    max_seconds: float = 0.0  # wall-clock budget for training (0 = none); the LR schedule follows it
    eval_chunk: int = 8192  # rays per chunk when rendering full images
    snapshot_every_seconds: float = 0.0  # write RUN/snapshots/<t>s/ every this many training seconds (0 = off)

    def validate(self) -> None:
        """Raise ConfigError for out-of-range values."""
        self.validate_cameras()
        positive = ["steps", "batch_rays", "max_batch_rays", "occ_resolution", "occ_update_every",
                    "checkpoint_every", "log_every", "eval_chunk"]
        for name in positive:
            if int(getattr(self, name)) <= 0:
                raise ConfigError(f"train.{name} must be > 0, got {getattr(self, name)}")
        if not (self.lr > 0 and self.step_size > 0 and 0 < self.lr_final <= 1):
            raise ConfigError("train.lr and train.step_size must be > 0 and train.lr_final in (0, 1]")
        if not (0 <= self.opacity_min < 1 and 0 <= self.early_stop_eps < 1):
            raise ConfigError("train.opacity_min and train.early_stop_eps must be in [0, 1)")
        if not 0 < self.occ_opacity_threshold < 1:
            raise ConfigError(f"train.occ_opacity_threshold must be in (0, 1), got {self.occ_opacity_threshold}")
        for name in ("background", "eval_background"):
            if getattr(self, name) not in ("random", "white", "black"):
                raise ConfigError(f"train.{name} must be random, white or black, got {getattr(self, name)!r}")
        if not 0 <= self.distortion < float("inf"):
            raise ConfigError(f"train.distortion must be a finite number >= 0, got {self.distortion}")
        if self.max_seconds < 0 or self.target_samples < 0 or self.snapshot_every_seconds < 0:
            raise ConfigError("train.max_seconds, target_samples and snapshot_every_seconds must be >= 0")


@dataclass
class SplatTrainConfig(CameraOptions):
    """Training settings of `v3kd fit --field splats` (3D Gaussian Splatting; lengths in scene units,
    learning rates per parameter group, densification steps scaled to a CPU budget)."""

    steps: int = 6000
    max_seconds: float = 0.0  # wall-clock budget (0 = none); schedules follow max(step, time) progress
    init: str = "auto"  # auto (the data's sparse points, else random), points, random (in the box), a run or a file
    background_points: int = 4096  # unbounded scenes: Gaussians on a far shell for the background (0 = none)
    background_radius: float = 10.0  # radius of that shell in box half-sizes
    init_points: int = 20000  # Gaussians at initialisation
    init_opacity: float = 0.1
    sh_degree_every: int = 500  # steps between raising the active SH degree by one
    lr_means: float = 1.6e-4  # times the scene extent; decays exponentially to lr_means_final
    lr_means_final: float = 1.6e-6
    lr_scales: float = 5e-3
    lr_quats: float = 1e-3
    lr_opacity: float = 5e-2
    lr_sh: float = 2.5e-3  # DC; higher bands use lr_sh / 20
    images_per_step: int = 1  # training images per step (the global batch; data-parallel: split over the ranks)
    ssim_lambda: float = 0.2  # loss = (1 - l) L1 + l (1 - SSIM)
    depth_weight: float = 0.0  # + this x L1 of expected depth (scene units) where the data has depth and opacity > 0.5
    refine_start: int = 300  # densification window [refine_start, refine_stop) every refine_every steps
    refine_stop: int = 3000
    refine_every: int = 100
    reset_every: int = 1500  # opacity reset period (steps); 0 = never
    grow_grad2d: float = 2e-4  # mean screen-space gradient (NDC units) above which a Gaussian grows
    grow_scale3d: float = 0.01  # largest axis below this fraction of the extent: clone, else split
    prune_opacity: float = 0.005
    prune_scale3d: float = 0.1  # prune Gaussians larger than this fraction of the extent
    max_gaussians: int = 300000  # densification stops adding beyond this count
    distortion: float = 0.0  # weight of the Mip-NeRF 360 distortion loss (sharpens surfaces; 0 = off)
    background: str = "random"  # training background: random (per image), white or black
    eval_background: str = "white"
    backend: str = "auto"  # splat rasterizer: auto, cpu, torch, gsplat
    checkpoint_every: int = 1000
    log_every: int = 50
    seed: int = 0
    snapshot_every_seconds: float = 0.0  # write RUN/snapshots/<t>s/ every this many training seconds (0 = off)

    def validate(self) -> None:
        """Raise ConfigError for out-of-range values."""
        self.validate_cameras()
        if self.background_points < 0 or not self.background_radius > 1:
            raise ConfigError("train.background_points must be >= 0 and train.background_radius > 1")
        for name in ("steps", "init_points", "sh_degree_every", "refine_every", "checkpoint_every", "log_every",
                     "max_gaussians", "images_per_step"):
            if int(getattr(self, name)) <= 0:
                raise ConfigError(f"train.{name} must be > 0, got {getattr(self, name)}")
        for name in ("lr_means", "lr_means_final", "lr_scales", "lr_quats", "lr_opacity", "lr_sh", "grow_grad2d",
                     "grow_scale3d", "prune_scale3d"):
            if not getattr(self, name) > 0:
                raise ConfigError(f"train.{name} must be > 0, got {getattr(self, name)}")
        if not (0 < self.init_opacity < 1 and 0 <= self.ssim_lambda <= 1 and 0 <= self.prune_opacity < 1):
            raise ConfigError("train.init_opacity must be in (0,1); ssim_lambda and prune_opacity in [0,1]")
        if min(self.max_seconds, self.reset_every, self.refine_start, self.snapshot_every_seconds,
               self.depth_weight) < 0:
            raise ConfigError("train.max_seconds, reset_every, refine_start, snapshot_every_seconds and depth_weight "
                              "must be >= 0")
        for name in ("background", "eval_background"):
            if getattr(self, name) not in ("random", "white", "black"):
                raise ConfigError(f"train.{name} must be random, white or black, got {getattr(self, name)!r}")
        if self.backend not in ("auto", "cpu", "torch", "gsplat"):
            raise ConfigError(f"train.backend must be auto, cpu, torch or gsplat, got {self.backend!r}")


@dataclass
class FitConfig:
    """Everything `v3kd fit` needs besides the data path: field options and training settings."""

    field_name: str
    field: dict[str, Any] = dataclasses.field(default_factory=dict)
    train: Any = dataclasses.field(default_factory=TrainConfig)  # TrainConfig, or SplatTrainConfig for splats

    def to_dict(self) -> dict[str, Any]:
        return {"field_name": self.field_name, "field": dict(self.field), "train": dataclasses.asdict(self.train)}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> FitConfig:
        name = d["field_name"]
        return cls(name, dict(d.get("field", {})), _train_from(d.get("train", {}), name))


def train_config_class(field_name: str) -> type:
    """The training-settings dataclass of a field family (splats train differently from fields)."""
    return SplatTrainConfig if field_name == "splats" else TrainConfig


# Option names before the vocabulary was unified (opacity, not alpha): run directories and YAML files
# written with them still load.
RENAMED = {"alpha_thre": "opacity_min", "occ_alpha_threshold": "occ_opacity_threshold"}


def _train_from(values: dict[str, Any], field_name: str) -> Any:
    if isinstance(values, dict):
        values = {RENAMED.get(k, k): v for k, v in values.items()}
    return dataclass_from(train_config_class(field_name), values, "train")


def load_fit_config(field_name: str, config_file: Path | None = None) -> FitConfig:
    """Defaults for `field_name` from `vision3d_kd/configs/<field_name>.yaml` or an explicit YAML file."""
    path = Path(config_file) if config_file else CONFIG_DIR / f"{field_name}.yaml"
    if not path.is_file() and not config_file:
        known = sorted(p.stem for p in CONFIG_DIR.glob("*.yaml"))
        raise ConfigError(f"unknown field {field_name!r} (known: {', '.join(known)})")
    raw = read_sections(path, ("field", "train"))
    return FitConfig(field_name, dict(raw.get("field") or {}), _train_from(raw.get("train") or {}, field_name))


def saved_fit_config(run: Path) -> FitConfig:
    """The settings run directory `run` was fitted with (config.json `fit`; to resume it)."""
    saved = read_config(run).get("fit")
    if not isinstance(saved, dict) or "field_name" not in saved:
        raise RunError(f"{run}: no fit settings in config.json (not a `v3kd fit` run)")
    return FitConfig.from_dict(saved)


def apply_overrides(cfg: FitConfig, overrides: list[str]) -> FitConfig:
    """Apply `section.key=value` overrides (section is `field` or `train`; value parsed as YAML)."""
    parsed = parse_overrides(overrides, ("field", "train"))
    train = {**dataclasses.asdict(cfg.train), **parsed["train"]}
    return FitConfig(cfg.field_name, {**cfg.field, **parsed["field"]}, _train_from(train, cfg.field_name))
