"""Configuration: settings dataclasses with declared types and bounds (one checker, `check_config`), the
fit configuration, per-field YAML files in `vision3d_kd/configs/`, CLI overrides.

A fit YAML file has two sections: `field:` (options of the field family's `*Config`, as in its JSON) and
`train:` (fields of `TrainConfig`). Overrides are `section.key=value` strings (value parsed as YAML).
"""

from __future__ import annotations

import dataclasses
import functools
import math
import numbers
import types
import typing
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import yaml

from .errors import ConfigError

__all__ = ["TrainConfig", "SplatTrainConfig", "FitConfig", "CONFIG_DIR", "load_fit_config", "apply_overrides",
           "dataclass_from", "parse_overrides", "read_sections", "CheckedConfig", "check_config", "bounded",
           "schedule_option", "aabb_option"]

CONFIG_DIR = Path(__file__).parent / "configs"
Bound = float | Callable[[Any], float] | None  # a fixed bound, or one computed from the config


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
    distortion: float = 0.0  # weight of the Mip-NeRF 360 distortion loss (sharpens surfaces; 0 = off)
    background: str = "random"  # training background: random, white or black
    eval_background: str = "white"  # background of evaluation renders and targets
    checkpoint_every: int = 500  # steps between checkpoints (weights + optimizer state)
    log_every: int = 25  # steps between log.jsonl records
    seed: int = 0
    max_seconds: float = 0.0  # wall-clock budget for training (0 = none); the LR schedule follows it
    downscale: int = 1  # integer image downscale factor
    eval_chunk: int = 8192  # rays per chunk when rendering full images
    snapshot_every_seconds: float = 0.0  # write RUN/snapshots/<t>s/ every this many training seconds (0 = off)

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
        if not 0 <= self.distortion < float("inf"):
            raise ConfigError(f"train.distortion must be a finite number >= 0, got {self.distortion}")
        if self.max_seconds < 0 or self.target_samples < 0 or self.snapshot_every_seconds < 0:
            raise ConfigError("train.max_seconds, target_samples and snapshot_every_seconds must be >= 0")


@dataclass
class SplatTrainConfig:
    """Training settings of `v3kd fit --field splats` (3D Gaussian Splatting; lengths in scene units,
    learning rates per parameter group, densification steps scaled to a CPU budget)."""

    steps: int = 6000
    max_seconds: float = 0.0  # wall-clock budget (0 = none); schedules follow max(step, time) progress
    init: str = "random"  # "random" (points in the scene box), a fitted field run, or a .ply/.splat/.spz file
    init_points: int = 20000  # Gaussians at initialisation
    init_opacity: float = 0.1
    sh_degree_every: int = 500  # steps between raising the active SH degree by one
    lr_means: float = 1.6e-4  # times the scene extent; decays exponentially to lr_means_final
    lr_means_final: float = 1.6e-6
    lr_scales: float = 5e-3
    lr_quats: float = 1e-3
    lr_opacity: float = 5e-2
    lr_sh: float = 2.5e-3  # DC; higher bands use lr_sh / 20
    ssim_lambda: float = 0.2  # loss = (1 - l) L1 + l (1 - SSIM)
    depth_weight: float = 0.0  # + this x L1 of expected depth (scene units) where the data has depth and alpha > 0.5
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
    downscale: int = 1
    snapshot_every_seconds: float = 0.0  # write RUN/snapshots/<t>s/ every this many training seconds (0 = off)

    def validate(self) -> None:
        """Raise ConfigError for out-of-range values."""
        for name in ("steps", "init_points", "sh_degree_every", "refine_every", "checkpoint_every", "log_every",
                     "downscale", "max_gaussians"):
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


def dataclass_from(klass: type, values: dict[str, Any], section: str) -> Any:
    """An instance of the dataclass `klass` with `values` over its defaults, coerced and checked by
    `check_config`. Unknown keys or bad values raise ConfigError naming `section.key`."""
    if not isinstance(values, dict):
        raise ConfigError(f"{section}: expected a mapping, got {type(values).__name__}")
    names = [f.name for f in dataclasses.fields(klass) if f.init]
    unknown = sorted(set(map(str, values)) - set(names))
    if unknown:
        raise ConfigError(f"unknown {section} option(s): {', '.join(unknown)} (known: {', '.join(names)})")
    cfg = klass(**values)
    if not isinstance(cfg, CheckedConfig):  # a CheckedConfig has checked itself
        check_config(cfg, section)
    return cfg


def _train_from(values: dict[str, Any], field_name: str) -> Any:
    return dataclass_from(train_config_class(field_name), values, "train")


def read_sections(path: Path, sections: tuple[str, ...]) -> dict[str, Any]:
    """The top-level mapping of a YAML config file whose keys must be among `sections` (ConfigError for a
    missing file, invalid YAML or other keys)."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: config file not found")
    try:
        raw = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: invalid YAML ({str(exc).splitlines()[0]})") from None
    if not isinstance(raw, dict) or set(raw) - set(sections):
        raise ConfigError(f"{path}: expected top-level keys {', '.join(sections)}")
    return raw


def load_fit_config(field_name: str, config_file: Path | None = None) -> FitConfig:
    """Defaults for `field_name` from `vision3d_kd/configs/<field_name>.yaml` or an explicit YAML file."""
    path = Path(config_file) if config_file else CONFIG_DIR / f"{field_name}.yaml"
    if not path.is_file() and not config_file:
        known = sorted(p.stem for p in CONFIG_DIR.glob("*.yaml"))
        raise ConfigError(f"unknown field {field_name!r} (known: {', '.join(known)})")
    raw = read_sections(path, ("field", "train"))
    return FitConfig(field_name, dict(raw.get("field") or {}), _train_from(raw.get("train") or {}, field_name))


def parse_overrides(overrides: list[str], sections: tuple[str, ...]) -> dict[str, dict[str, Any]]:
    """`section.key=value` strings -> {section: {key: value}} (value parsed as YAML)."""
    out: dict[str, dict[str, Any]] = {s: {} for s in sections}
    for item in overrides:
        key, sep, value = item.partition("=")
        section, dot, name = key.strip().partition(".")
        if not sep or not dot or section not in sections or not name:
            forms = " or ".join(f"{s}.KEY=VALUE" for s in sections)
            raise ConfigError(f"override {item!r}: expected {forms}")
        try:
            out[section][name] = yaml.safe_load(value)
        except yaml.YAMLError:
            raise ConfigError(f"override {item!r}: value is not valid YAML") from None
    return out


def apply_overrides(cfg: FitConfig, overrides: list[str]) -> FitConfig:
    """Apply `section.key=value` overrides (section is `field` or `train`; value parsed as YAML)."""
    parsed = parse_overrides(overrides, ("field", "train"))
    train = {**dataclasses.asdict(cfg.train), **parsed["train"]}
    return FitConfig(cfg.field_name, {**cfg.field, **parsed["field"]}, _train_from(train, cfg.field_name))


# ------------------------------------------------------------------------------ declarative options
# A settings dataclass declares each option's type in its annotation and its bounds in field metadata
# (`bounded`, `schedule_option`, `aabb_option`); `check_config` coerces and checks them all, so there is
# one validation path for fit, convert, generate and every field family's `*Config`.


def bounded(default: Any, lo: Bound = None, hi: Bound = None) -> Any:
    """A dataclass field with an immutable `default` whose value must lie in [lo, hi] (None: open). A
    bound may be a function of the config, e.g. `lo=lambda c: c.base_resolution`."""
    return dataclasses.field(default=default, metadata={"lo": lo, "hi": hi})


def schedule_option(default: tuple[tuple[int, int], ...], lo: int = 1, hi: int | None = None,
                    what: str = "value") -> Any:
    """A list of [step, value] pairs: steps >= 0 and increasing, each value (`what`) an int in [lo, hi]."""
    return dataclasses.field(default=default, metadata={"kind": "schedule", "lo": lo, "hi": hi, "what": what})


def aabb_option(default: Any) -> Any:
    """A box [[xmin, ymin, zmin], [xmax, ymax, zmax]] (finite, min < max on every axis; world units)."""
    return dataclasses.field(default=default, metadata={"kind": "aabb"})


@dataclass
class CheckedConfig:
    """Base of settings dataclasses: every instance (made directly, by `dataclasses.replace` or by
    `dataclass_from`) is coerced and checked by `check_config`; errors name `section.option`."""

    section: ClassVar[str] = "config"

    def __post_init__(self) -> None:
        check_config(self, self.section)


def check_config(cfg: Any, section: str) -> None:
    """Coerce every option of the dataclass instance `cfg` to its annotated type (int: integral numbers;
    float: finite numbers or numeric strings, which YAML 1.1 makes of `1e-6`; Literal: one of its values;
    tuples element-wise; schedules and boxes per their metadata), then check the declared bounds. In
    place; ConfigError naming `section.option` for the first bad value."""
    hints = _hints(type(cfg))
    fields = dataclasses.fields(cfg)
    for f in fields:
        tp = hints.get(f.name) or (type(f.default) if f.default not in (dataclasses.MISSING, None) else Any)
        object.__setattr__(cfg, f.name, _coerce(tp, getattr(cfg, f.name), f"{section}.{f.name}", f.metadata))
    for f in fields:
        value = getattr(cfg, f.name)
        if value is not None and not f.metadata.get("kind"):
            lo, hi = (b(cfg) if callable(b) else b for b in (f.metadata.get("lo"), f.metadata.get("hi")))
            _check_range(value, lo, hi, f"{section}.{f.name}")


@functools.cache
def _hints(klass: type) -> dict[str, Any]:
    try:
        return typing.get_type_hints(klass)
    except (NameError, TypeError):  # an annotation this module cannot resolve: fall back to the default's type
        return {}


def _coerce(tp: Any, v: Any, label: str, meta: Any) -> Any:
    """`v` as type `tp` (see `check_config`), else ConfigError."""
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin in (typing.Union, types.UnionType):
        if v is None and type(None) in args:
            return None
        rest = [a for a in args if a is not type(None)]
        return _coerce(rest[0], v, label, meta) if len(rest) == 1 else v
    kind = meta.get("kind")
    if kind == "aabb":
        return _aabb(v, label)
    if kind == "schedule":
        return _schedule(v, label, meta["lo"], meta["hi"], meta["what"])
    if origin is typing.Literal:
        if not any(type(v) is type(a) and v == a for a in args):
            raise ConfigError(f"{label}={v!r} must be one of {', '.join(map(str, args))}")
        return v
    if tp is bool and not isinstance(v, bool):
        raise ConfigError(f"{label} must be true or false, got {v!r}")
    if tp is int:
        return _int(v, label)
    if tp is float:
        return _float(v, label)
    if tp is str and not isinstance(v, str):
        raise ConfigError(f"{label} must be a string, got {v!r}")
    if tp is dict or origin is dict:
        if not isinstance(v, Mapping):
            raise ConfigError(f"{label} must be a mapping, got {v!r}")
        return dict(v)
    if tp is tuple or origin is tuple:
        return _tuple(args, v, label)
    return v


def _int(v: Any, label: str) -> int:
    if isinstance(v, float) and v.is_integer():
        return int(v)
    if isinstance(v, bool) or not isinstance(v, numbers.Integral):  # Integral: numpy ints too
        raise ConfigError(f"{label} must be an integer, got {v!r}")
    return int(v)


def _float(v: Any, label: str) -> float:
    try:
        x = float(v) if isinstance(v, (numbers.Real, str)) and not isinstance(v, bool) else math.nan
    except ValueError:
        x = math.nan
    if not math.isfinite(x):
        raise ConfigError(f"{label} must be a finite number, got {v!r}")
    return x


def _tuple(args: tuple[Any, ...], v: Any, label: str) -> tuple[Any, ...]:
    if isinstance(v, (str, bytes, Mapping)) or not isinstance(v, Iterable):
        raise ConfigError(f"{label} must be a list, got {v!r}")
    items = list(v)
    if len(args) == 2 and args[1] is Ellipsis:
        return tuple(_coerce(args[0], x, label, {}) for x in items)
    if args and len(items) != len(args):
        raise ConfigError(f"{label} must have {len(args)} values, got {v!r}")
    return tuple(_coerce(a, x, label, {}) for a, x in zip(args, items, strict=True)) if args else tuple(items)


def _check_range(v: Any, lo: Any, hi: Any, label: str) -> None:
    if (lo is not None and v < lo) or (hi is not None and v > hi):
        bounds = f"out of range [{lo}, {hi}]" if lo is not None and hi is not None else (
            f"must be >= {lo}" if lo is not None else f"must be <= {hi}")
        raise ConfigError(f"{label}={v} {bounds}")


def _schedule(v: Any, label: str, lo: int, hi: int | None, what: str) -> tuple[tuple[int, int], ...]:
    if v is None:
        return ()
    if isinstance(v, (str, bytes, Mapping)) or not isinstance(v, Iterable):
        raise ConfigError(f"{label} must be a list of [step, {what}] pairs, got {v!r}")
    out: list[tuple[int, int]] = []
    for item in v:
        if isinstance(item, (str, bytes)) or not isinstance(item, Sequence) or len(item) != 2:
            raise ConfigError(f"{label} needs [step, {what}] pairs, got {item!r}")
        step, value = _int(item[0], f"{label} step"), _int(item[1], f"{label} {what}")
        _check_range(step, 0, None, f"{label} step")
        _check_range(value, lo, hi, f"{label} {what}")
        if out and step <= out[-1][0]:
            raise ConfigError(f"{label} steps must increase, got {v!r}")
        out.append((step, value))
    return tuple(out)


def _aabb(v: Any, label: str) -> tuple[tuple[float, ...], ...]:
    msg = f"{label} must be [[xmin,ymin,zmin],[xmax,ymax,zmax]] with min < max, got {v!r}"
    v = v.tolist() if hasattr(v, "tolist") else v  # a tensor or array
    try:
        box = tuple(tuple(float(x) for x in corner) for corner in v)
    except (TypeError, ValueError):
        raise ConfigError(msg) from None
    if len(box) != 2 or any(len(c) != 3 for c in box) or not all(map(math.isfinite, box[0] + box[1])):
        raise ConfigError(msg)
    if any(a >= b for a, b in zip(*box, strict=True)):
        raise ConfigError(msg)
    return box
