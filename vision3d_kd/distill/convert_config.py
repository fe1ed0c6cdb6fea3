"""`v3kd convert` settings: the `convert:` section of `configs/convert/*.yaml` (stages, loss weights,
virtual cameras, PVD-AL mining); the student's optimiser settings come from its `v3kd fit` config
(`train:` / `field:` sections here override them)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from ..config import CONFIG_DIR, dataclass_from, read_sections
from ..errors import ConfigError
from ..train.config import FitConfig, apply_overrides, load_fit_config

__all__ = ["ConvertConfig", "load_convert_config", "CONVERT_CONFIG_DIR", "TARGETS"]

CONVERT_CONFIG_DIR = CONFIG_DIR / "convert"
TARGETS = ("mlp", "hashgrid", "tensorf-vm", "tensorf-cp", "grid", "splats")  # student families


@dataclass
class ConvertConfig:
    """Stages are fractions of the run (progress = max(step / steps, seconds / max_seconds)):
    [0, stage1_end) matches the block (log density + geometry features), [stage1_end, stage2_end) adds
    per-sample colour, the rest adds rendered RGB. Densities are compared as log(sigma) with the target
    clamped to [log_density_min, log_density_max] (the 'special treatment of density'). The defaults are the PVD
    paper's code's: loss_form "norm" (its `normL2`: each term the unsquared L2 norm of its whole batch of
    differences), block weights 0.002, the feature weight x0.995 per step, stages ending at 2k and 5k of its 30k
    iterations. loss_form "mse" (each term a sample- or ray-mean squared error) with feature 0.1, density 0.02,
    colour 1.0, decay 1, stages 0.1 / 0.3 were this project's first losses (1.7 dB worse on the validation
    scene; a splats teacher's per-ray losses are always mean squared errors)."""

    stage1_end: float = 0.0667
    stage2_end: float = 0.1667
    feature_weight: float = 0.002  # the 15 geometry features (samples inside matter)
    density_weight: float = 0.002  # clamped log densities (all samples)
    color_weight: float = 0.002  # per-sample colour (samples inside matter)
    rgb_weight: float = 1.0  # rendered colour against the teacher's render
    depth_weight: float = 0.0  # L1 of expected ray depth (scene units) where the teacher is opaque (splat teachers)
    loss_form: str = "norm"  # norm | mse (see above)
    feature_decay: float = 0.995  # the feature weight is multiplied by this every step
    log_density_min: float = -2.0
    log_density_max: float = 7.0
    copy_color_head: bool = True  # start the student's colour head as a copy of the teacher's
    cams_per_step: int = 8  # virtual cameras per step (rays are spread over them)
    # virtual camera elevation range (degrees); None: the teacher's training cameras' range
    elevation_deg: tuple[float, float] | None = None
    radius_scale: tuple[float, float] = (0.9, 1.1)  # times the teacher run's camera distance
    virtual_views: int = 100  # pre-rendered teacher views (splat teachers; field -> splats)
    eval_views: int = 8  # held-out virtual views for PSNR against the teacher
    eval_size: int = 100  # their image size (pixels)
    active: bool = False  # PVD-AL hard-example mining (defaults: the paper's code, distill/active.py)
    hard_camera_fraction: float = 0.1  # share of a step's cameras drawn from the hard-camera pool
    camera_pool: int = 16  # worst cameras kept
    camera_jitter_deg: float = 9.0  # jitter of re-used hard cameras (elevation, azimuth; the paper: pi/20)
    hard_ray_fraction: float = 0.1  # share of a step's rays re-used from the last step's worst rays
    al_samples: str = "paper"  # sample rule: "paper" (top_share where weight >= min_ray_weight) or "boost"
    top_share: float = 0.3  # paper: per ray, the heaviest floor(top_share * n) + 1 samples ...
    min_ray_weight: float = 0.5  # ... of rays whose weights sum to at least this keep their per-sample losses
    top_samples: int = 3  # boost: per ray, samples with the largest teacher weight ...
    top_sample_boost: float = 4.0  # ... get this extra weight in the per-sample losses
    real_ray_fraction: float = 0.25  # with --data: share of rays taken from the real training images

    def validate(self) -> None:
        """Raise ConfigError for out-of-range values."""
        if not 0 <= self.stage1_end <= self.stage2_end <= 1:
            raise ConfigError("convert.stage1_end <= convert.stage2_end must lie in [0, 1]")
        for name in ("feature_weight", "density_weight", "color_weight", "rgb_weight", "depth_weight",
                     "camera_jitter_deg", "top_sample_boost"):
            if not getattr(self, name) >= 0:
                raise ConfigError(f"convert.{name} must be >= 0, got {getattr(self, name)}")
        if not self.log_density_min < self.log_density_max:
            raise ConfigError("convert.log_density_min must be < convert.log_density_max")
        for name in ("cams_per_step", "virtual_views", "eval_views", "eval_size", "camera_pool", "top_samples"):
            if int(getattr(self, name)) < 1:
                raise ConfigError(f"convert.{name} must be >= 1, got {getattr(self, name)}")
        for name in ("hard_camera_fraction", "hard_ray_fraction", "real_ray_fraction"):
            if not 0 <= getattr(self, name) < 1:
                raise ConfigError(f"convert.{name} must be in [0, 1), got {getattr(self, name)}")
        if self.loss_form not in ("mse", "norm"):
            raise ConfigError(f"convert.loss_form must be 'mse' or 'norm', got {self.loss_form!r}")
        if not 0 < self.feature_decay <= 1:
            raise ConfigError(f"convert.feature_decay must be in (0, 1], got {self.feature_decay}")
        if self.al_samples not in ("paper", "boost"):
            raise ConfigError(f"convert.al_samples must be 'paper' or 'boost', got {self.al_samples!r}")
        if not (0 < self.top_share <= 1 and self.min_ray_weight >= 0):
            raise ConfigError("convert.top_share must be in (0, 1] and convert.min_ray_weight >= 0")
        if self.elevation_deg is not None and len(self.elevation_deg) != 2:
            raise ConfigError(f"convert.elevation_deg must be a (low, high) pair, got {self.elevation_deg}")
        lo, hi = self.elevation_deg or (0.0, 0.0)
        if not -90 <= lo <= hi <= 90:
            raise ConfigError(f"convert.elevation_deg must be a range within [-90, 90], got {self.elevation_deg}")
        lo, hi = self.radius_scale
        if not 0 < lo <= hi:
            raise ConfigError(f"convert.radius_scale must be a positive range, got {self.radius_scale}")


def _convert_from(values: dict[str, Any]) -> ConvertConfig:
    return dataclass_from(ConvertConfig, values, "convert")


def load_convert_config(student: str, config_file: Path | None = None,
                        overrides: list[str] | None = None) -> tuple[ConvertConfig, FitConfig]:
    """(ConvertConfig, the student's FitConfig) from `configs/convert/default.yaml` (or `config_file`),
    with `convert.K=V`, `train.K=V` and `field.K=V` overrides applied."""
    raw = read_sections(Path(config_file) if config_file else CONVERT_CONFIG_DIR / "default.yaml",
                        ("convert", "train", "field", "students"))
    per_student = (raw.get("students") or {}).get(student) or {}
    conv = {**(raw.get("convert") or {}), **(per_student.get("convert") or {})}
    fit_over = [f"{sec}.{k}={v!r}" if isinstance(v, str) else f"{sec}.{k}={v}"
                for sec in ("train", "field")
                for k, v in {**(raw.get(sec) or {}), **(per_student.get(sec) or {})}.items()]
    fit_cfg = apply_overrides(load_fit_config(student), fit_over)
    conv_over, fit_cli = {}, []
    for item in overrides or []:
        key, sep, value = item.partition("=")
        if key.startswith("convert.") and sep:
            conv_over[key[len("convert."):]] = yaml.safe_load(value)
        else:
            fit_cli.append(item)
    fit_cfg = apply_overrides(fit_cfg, fit_cli)
    cfg = _convert_from({**conv, **conv_over})
    cfg.validate()
    fit_cfg.train.validate()
    return cfg, fit_cfg
