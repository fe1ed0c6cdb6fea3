"""Fit configuration: dataclass defaults, per-field YAML files in `vision3d_kd/configs/`, CLI overrides.

A YAML file has two sections: `field:` (keyword arguments of the field class) and `train:`
(fields of `TrainConfig`). Overrides are `section.key=value` strings (value parsed as YAML).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from .errors import ConfigError

__all__ = ["TrainConfig", "FitConfig", "CONFIG_DIR", "load_fit_config", "apply_overrides"]

CONFIG_DIR = Path(__file__).parent / "configs"


@dataclass
class TrainConfig:
    """Optimisation and sampling settings of `v3kd fit` (distances in scene units)."""

    steps: int = 3000  # optimisation steps
    batch_rays: int = 4096  # rays per step at the start (adapted when target_samples > 0)
    target_samples: int = 0  # adapt rays per step so each step has about this many samples (0 = off)
    max_batch_rays: int = 16384
    lr: float = 1e-2  # peak learning rate (fields may scale it per parameter group)
    lr_final: float = 0.03  # final learning rate as a fraction of lr (exponential decay)
    warmup_steps: int = 50  # linear warm-up of the learning rate
    step_size: float = 0.01  # ray-marching step (scene units)
    alpha_thre: float = 0.0  # training: drop samples with alpha below this (0 keeps a fresh field trainable)
    early_stop_eps: float = 1e-4  # training: drop samples behind an opaque surface (transmittance below this)
    occ_resolution: int = 128  # occupancy grid cells per axis
    occ_update_every: int = 16  # steps between occupancy refreshes
    occ_warmup_steps: int = 256  # steps during which every cell is refreshed
    occ_alpha_threshold: float = 0.01  # a cell is empty when a step through it has alpha below this
    background: str = "random"  # training background: random, white or black
    eval_background: str = "white"  # background of evaluation renders and targets
    checkpoint_every: int = 500  # steps between checkpoints (weights + optimizer state)
    log_every: int = 25  # steps between log.jsonl records
    seed: int = 0
    max_seconds: float = 0.0  # wall-clock budget for training (0 = none); the LR schedule follows it
    downscale: int = 1  # integer image downscale factor
    eval_chunk: int = 8192  # rays per chunk when rendering full images

    def validate(self) -> None:
        """Raise ConfigError for out-of-range values."""
        positive = ["steps", "batch_rays", "max_batch_rays", "occ_resolution", "occ_update_every",
                    "checkpoint_every", "log_every", "downscale", "eval_chunk"]
        for name in positive:
            if int(getattr(self, name)) <= 0:
                raise ConfigError(f"train.{name} must be > 0, got {getattr(self, name)}")
        if not (self.lr > 0 and self.step_size > 0 and 0 < self.lr_final <= 1):
            raise ConfigError("train.lr and train.step_size must be > 0 and train.lr_final in (0, 1]")
        if not (0 <= self.alpha_thre < 1 and 0 <= self.early_stop_eps < 1):
            raise ConfigError("train.alpha_thre and train.early_stop_eps must be in [0, 1)")
        if not 0 < self.occ_alpha_threshold < 1:
            raise ConfigError(f"train.occ_alpha_threshold must be in (0, 1), got {self.occ_alpha_threshold}")
        for name in ("background", "eval_background"):
            if getattr(self, name) not in ("random", "white", "black"):
                raise ConfigError(f"train.{name} must be random, white or black, got {getattr(self, name)!r}")
        if self.max_seconds < 0 or self.target_samples < 0:
            raise ConfigError("train.max_seconds and train.target_samples must be >= 0")


@dataclass
class FitConfig:
    """Everything `v3kd fit` needs besides the data path: field options and training settings."""

    field_name: str
    field: dict[str, Any] = dataclasses.field(default_factory=dict)
    train: TrainConfig = dataclasses.field(default_factory=TrainConfig)

    def to_dict(self) -> dict[str, Any]:
        return {"field_name": self.field_name, "field": dict(self.field), "train": dataclasses.asdict(self.train)}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> FitConfig:
        return cls(d["field_name"], dict(d.get("field", {})), _train_from(d.get("train", {})))


def _train_from(values: dict[str, Any]) -> TrainConfig:
    names = {f.name: f.type for f in dataclasses.fields(TrainConfig)}
    unknown = sorted(set(values) - set(names))
    if unknown:
        raise ConfigError(f"unknown train option(s): {', '.join(unknown)} (known: {', '.join(names)})")
    cfg = TrainConfig()
    for k, v in values.items():
        default = getattr(cfg, k)
        try:
            setattr(cfg, k, type(default)(v))
        except (TypeError, ValueError):
            raise ConfigError(f"train.{k}: expected {type(default).__name__}, got {v!r}") from None
    return cfg


def load_fit_config(field_name: str, config_file: Path | None = None) -> FitConfig:
    """Defaults for `field_name` from `vision3d_kd/configs/<field_name>.yaml` or an explicit YAML file."""
    path = Path(config_file) if config_file else CONFIG_DIR / f"{field_name}.yaml"
    if not path.is_file():
        if config_file:
            raise ConfigError(f"{path}: config file not found")
        known = sorted(p.stem for p in CONFIG_DIR.glob("*.yaml"))
        raise ConfigError(f"unknown field {field_name!r} (known: {', '.join(known)})")
    try:
        raw = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: invalid YAML ({str(exc).splitlines()[0]})") from None
    if not isinstance(raw, dict) or set(raw) - {"field", "train"}:
        raise ConfigError(f"{path}: expected top-level keys 'field' and 'train'")
    return FitConfig(field_name, dict(raw.get("field") or {}), _train_from(raw.get("train") or {}))


def apply_overrides(cfg: FitConfig, overrides: list[str]) -> FitConfig:
    """Apply `section.key=value` overrides (section is `field` or `train`; value parsed as YAML)."""
    train = dataclasses.asdict(cfg.train)
    fld = dict(cfg.field)
    for item in overrides:
        key, sep, value = item.partition("=")
        section, dot, name = key.strip().partition(".")
        if not sep or not dot or section not in ("field", "train") or not name:
            raise ConfigError(f"override {item!r}: expected field.KEY=VALUE or train.KEY=VALUE")
        try:
            parsed = yaml.safe_load(value)
        except yaml.YAMLError:
            raise ConfigError(f"override {item!r}: value is not valid YAML") from None
        (fld if section == "field" else train)[name] = parsed
    return FitConfig(cfg.field_name, fld, _train_from(train))
