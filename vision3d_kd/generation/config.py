"""`v3kd generate` configuration: `GenerateConfig` (cameras, student, shading, regularisers, outputs), the
student's field options and the guidance's `GuidanceConfig`, from `vision3d_kd/configs/generate/<method>.yaml`
(sections `generate:`, `field:` — options per student family, e.g. `field: {hashgrid: {n_levels: 8}}` — and
`guidance:`) and `section.key=value` overrides (`field.KEY=V` applies to the chosen student)."""

from __future__ import annotations

import dataclasses
import json
import math
import re
from dataclasses import dataclass
from dataclasses import field as dc_field
from pathlib import Path
from typing import Any

from ..config import CONFIG_DIR, dataclass_from, parse_overrides, read_sections
from ..errors import ConfigError
from ..fields.blob import BOX_RATIO
from ..guidance.pipeline_files import DTYPES
from ..guidance.sds import METHODS, GuidanceConfig

__all__ = ["GenerateConfig", "GenerationConfig", "load_generate_config", "GENERATE_DIR"]

GENERATE_DIR = CONFIG_DIR / "generate"
SECTIONS = ("generate", "field", "guidance")


@dataclass
class GenerateConfig:
    """Everything but the guidance. Angles in degrees, distances in scene units (object within the
    box [-aabb, aabb]^3, z up, front = +x as in the bundled prior's world)."""

    steps: int = 600                  # distillation steps
    max_seconds: float = 0.0          # wall-clock budget (0: none); schedules follow the clock
    lr: float = 0.01                  # Adam learning rate of the student
    batch: int = 1                    # cameras per step (per particle)
    particles: int = 1                # independent students optimised together (VSD's particles)
    student: str = "hashgrid"         # any field family, or splats
    prior_dtype: str = "fp32"         # the prior's compute dtype: fp32, fp16 or bf16 (the student stays fp32)
    size: int = 0                     # render size in pixels (0: the prior's image size)
    elevation_deg: tuple[float, float] = (-10.0, 60.0)
    azimuth_deg: tuple[float, float] = (-180.0, 180.0)
    radius: tuple[float, float] = (3.2, 3.8)
    fov_deg: tuple[float, float] = (40.0, 40.0)
    aabb: float = 1.0                 # half size of the student's box
    step_size: float = 0.02           # ray-marching step
    blob_density: float = 10.0        # Magic3D density blob b(p) = λ(1 − ‖p‖/σ): λ
    blob_radius: float = 0.5          # ... and σ
    start_levels: int = 4             # hash-grid levels active at the start (all by half-way)
    p_albedo: float = 0.0             # shading augmentation probabilities (the rest: textureless); no
    p_lambertian: float = 0.8         # albedo-only renders: on the white background they hide white parts
    ambient: tuple[float, float] = (0.3, 0.5)
    lambda_orient: float = 0.01       # DreamFusion orientation penalty
    opacity_min: float | None = None  # samples of lower opacity (gradient-free pass) get no gradient pass;
    #                                   None: 1e-4 with a layout, else 0
    shade_weight_min: float | None = None  # shaded renders: samples of weight below this face the camera
    #                                   instead of −∇σ (3 density evaluations fewer); None: 1e-3 with a layout, else 0
    white_proxy: float | None = None  # chance a step shows white objects to the prior as gray
    #                                   (guidance/white_proxy.py); None: 0.5 with the bundled prior, else 0
    white_proxy_colour: bool = True   # gray-proxy steps teach the colour too (False: only the density)
    lambda_sparsity: float = 0.0      # mean opacity
    lambda_opaque: float = 0.0        # binary entropy of the opacity (pushes it to 0 or 1)
    lambda_albedo_smooth: float = 0.0  # field students: L1 between a sample's colour and its colour a
    albedo_smooth_step: float = 0.02  # ... random offset of this std away (world units; × smallest scale in a layout)
    albedo_smooth_colour_only: bool = False  # ... its gradient reaches the colour head only (geometry features
    #                                   detached, so it cannot reshape the density; render/shading.py)
    occ_update_every: int = 16        # steps between occupancy-grid refreshes
    occ_resolution: int = 64
    view_dependent_prompt: bool = True
    splats: int = 4096                # splat student: initial Gaussians (in the blob)
    seed: int = 0
    checkpoint_every: int = 100
    log_every: int = 10
    mesh_resolution: int = 256        # outputs: marching-cubes lattice, turntable frames and size (pixels)
    video_frames: int = 48
    video_size: int = 256
    prune_floaters: bool = True       # after the loop: clear the occupancy grid outside the main components
    floater_keep_ratio: float = 0.1   # ... keeping any component with this share of the largest one's mass
    close_gaps: float = 0.08          # ... after joining parts this close to the main body (scene units; 0: not)
    harmonise: float = 0.0            # layouts: last fraction of the steps that adds the whole-scene term
    harmonise_t_max: float = 0.3      # ... with timesteps at most this fraction of T
    box_tables: bool = True           # layouts, hash-grid student: a hash table per box (fields/hashgrid.py)
    box_heads: bool = True            # ... and a colour head per box (with box_tables only)
    box_density_heads: bool = True    # ... and a density MLP per box (with box_tables only)
    box_blob_scaled: bool = True      # layouts, field students: box blob peaks / object scale (fields/blob.py)
    box_blob_relative: bool = False   # ... peaks × largest scale / object scale (the largest object keeps its)
    box_blob_ratio: float = BOX_RATIO  # ... each box's blob axes: this share of its sides × blob_radius (the paper's r)
    box_steps: bool = False           # layouts, field students: each object's rays at its own lone step
    box_own_scale: bool = False       # ... and its normals' differences and (box tables) hash levels as a lone one's
    box_albedo_smooth: float = 1000.0  # layouts, field students: lambda_albedo_smooth of a layout's run (replaces
    #                                   it; chosen on validation, bench/TUNING.md)

    def validate(self) -> None:
        """Raise ConfigError for out-of-range values."""
        for f in dataclasses.fields(self):
            v = getattr(self, f.name)
            vals = v if isinstance(v, tuple) else (v,)
            if any(isinstance(x, float) and not math.isfinite(x) for x in vals):
                raise ConfigError(f"generate.{f.name} must be finite, got {v}")
        if self.box_blob_ratio <= 0:
            raise ConfigError(f"generate.box_blob_ratio must be > 0, got {self.box_blob_ratio}")
        for name in ("steps", "batch", "particles", "occ_update_every", "occ_resolution", "checkpoint_every",
                     "log_every", "mesh_resolution", "video_frames", "video_size", "splats"):
            if getattr(self, name) < 1:
                raise ConfigError(f"generate.{name} must be >= 1, got {getattr(self, name)}")
        if self.lr <= 0 or self.step_size <= 0 or self.aabb <= 0 or self.blob_radius <= 0 or self.size < 0:
            raise ConfigError("generate.lr, step_size, aabb and blob_radius must be > 0 and size >= 0")
        if not (0 <= self.p_albedo and 0 <= self.p_lambertian and self.p_albedo + self.p_lambertian <= 1):
            raise ConfigError("generate.p_albedo and p_lambertian must be >= 0 and sum to at most 1")
        for name in ("elevation_deg", "azimuth_deg", "radius", "fov_deg", "ambient"):
            lo, hi = getattr(self, name)
            if lo > hi:
                raise ConfigError(f"generate.{name} must be (low, high) with low <= high, got {(lo, hi)}")
        if min(self.lambda_orient, self.lambda_sparsity, self.lambda_opaque, self.lambda_albedo_smooth,
               self.box_albedo_smooth) < 0:
            raise ConfigError("generate.lambda_* and box_albedo_smooth must be >= 0")
        if self.albedo_smooth_step <= 0:
            raise ConfigError(f"generate.albedo_smooth_step must be > 0, got {self.albedo_smooth_step}")
        for name in ("opacity_min", "shade_weight_min"):
            v = getattr(self, name)
            if v is not None and not 0 <= v < 1:
                raise ConfigError(f"generate.{name} must be in [0, 1), got {v}")
        if self.white_proxy is not None and not 0 <= self.white_proxy <= 1:
            raise ConfigError(f"generate.white_proxy must be in [0, 1], got {self.white_proxy}")
        if self.close_gaps < 0:
            raise ConfigError(f"generate.close_gaps must be >= 0, got {self.close_gaps}")
        if not 0 < self.floater_keep_ratio <= 1:
            raise ConfigError(f"generate.floater_keep_ratio must be in (0, 1], got {self.floater_keep_ratio}")
        if not (0 <= self.harmonise < 1 and 0 < self.harmonise_t_max <= 1):
            raise ConfigError("generate.harmonise must be in [0, 1) and generate.harmonise_t_max in (0, 1]")
        if self.prior_dtype not in DTYPES:
            raise ConfigError(f"generate.prior_dtype (--dtype) must be fp32, fp16 or bf16, got {self.prior_dtype!r}")


@dataclass
class GenerationConfig:
    """A method's complete settings: loop, student field options and guidance."""

    method: str
    generate: GenerateConfig
    field: dict[str, Any] = dc_field(default_factory=dict)
    guidance: GuidanceConfig = dc_field(default_factory=GuidanceConfig)

    def to_dict(self) -> dict[str, Any]:
        return {"method": self.method, "generate": dataclasses.asdict(self.generate), "field": dict(self.field),
                "guidance": self.guidance.to_dict()}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> GenerationConfig:
        return cls(d["method"], dataclass_from(GenerateConfig, d.get("generate") or {}, "generate"),
                   dict(d.get("field") or {}), dataclass_from(GuidanceConfig, d.get("guidance") or {}, "guidance"))

    def validate(self) -> None:
        if self.method not in METHODS:
            raise ConfigError(f"unknown method {self.method!r}; choose one of {', '.join(METHODS)}")
        self.generate.validate()
        self.guidance.validate()


def load_generate_config(method: str, config_file: Path | None = None,
                         overrides: list[str] | None = None) -> GenerationConfig:
    """The method's YAML (or `config_file`) with `generate.K=V`, `field.K=V`, `guidance.K=V` overrides."""
    if method not in METHODS:
        raise ConfigError(f"unknown method {method!r}; choose one of {', '.join(METHODS)}")
    raw = read_sections(Path(config_file) if config_file else GENERATE_DIR / f"{method}.yaml", SECTIONS)
    extra = parse_overrides(list(overrides or []), SECTIONS)
    generate = {**(raw.get("generate") or {}), **extra["generate"]}
    student = generate.get("student", GenerateConfig.student)
    per_student = raw.get("field") or {}
    if not isinstance(per_student, dict) or not all(isinstance(v, dict) for v in per_student.values()):
        raise ConfigError(f"{method} config: field: must map student names to their options (hashgrid: {{...}})")
    field = {**(per_student.get(student) or {}), **extra["field"]}
    guidance = {**(raw.get("guidance") or {}), **extra["guidance"]}
    setup = GenerationConfig.from_dict({"method": method, "generate": generate, "field": field, "guidance": guidance})
    setup.validate()
    return setup


def run_name(prompt: str, method: str, seed: int) -> str:
    """Default run folder name of a generation: '<prompt slug (40 chars)>-<method>-<seed>'."""
    slug = re.sub(r"[^a-z0-9]+", "-", prompt.lower()).strip("-")[:40] or "object"
    return f"{slug}-{method}-{seed}"


# settings that change what a run writes, not what it learns (a finished run is reusable across them)
OUTPUT_ONLY = {"checkpoint_every", "log_every", "mesh_resolution", "video_frames", "video_size"}
END_STEP = {"prune_floaters", "floater_keep_ratio", "close_gaps"}  # what `generate_run` does after the loop
# settings that one method alone reads: runs of the other methods were made with them whatever their values
METHOD_ONLY = {"guidance.vsd_camera": "vsd", "guidance.lora_rank": "vsd", "guidance.lora_lr": "vsd",
               "guidance.lora_steps": "vsd", "guidance.camera_dropout": "vsd", "guidance.bsd_lambda": "bsd"}
# settings that act on layouts (`generate --layout`) only: single-object runs were made with them whatever their values
LAYOUT_ONLY = frozenset({"generate.harmonise", "generate.harmonise_t_max", "generate.box_tables",
                         "generate.box_heads", "generate.box_blob_scaled",
                         "generate.box_steps", "generate.box_blob_relative", "generate.box_density_heads",
                         "generate.box_own_scale",
                         "generate.box_blob_ratio", "generate.box_albedo_smooth"})
# settings added after runs were saved, with the value such runs were made with
ADDED = {"guidance.vsd_camera": "angles", "generate.harmonise": 0.0, "generate.harmonise_t_max": 0.3,
         "generate.white_proxy": 0.0, "generate.box_tables": False,
         "generate.white_proxy_colour": True, "generate.box_heads": False,
         "generate.box_blob_scaled": False, "generate.box_steps": False, "generate.box_blob_relative": False,
         "generate.box_density_heads": False, "generate.box_own_scale": False,
         "generate.box_blob_ratio": 0.625, "generate.lambda_albedo_smooth": 0.0, "generate.albedo_smooth_step": 0.02,
         "generate.box_albedo_smooth": 0.0, "generate.albedo_smooth_colour_only": False}


def changed_settings(saved: dict[str, Any], setup: GenerationConfig, end_step: bool = True,
                     ignore: frozenset[str] = frozenset()) -> list[str]:
    """Dotted names of the settings in which a run's saved `generate` section (its config.json) differs from
    `setup`, output-only ones ignored (and the END_STEP ones unless `end_step`: for runs that only ran the
    loop; `ignore`: dotted names that cannot have acted on this run); [] when the run was made with these
    settings."""
    ignored = OUTPUT_ONLY | (set() if end_step else END_STEP)
    now = json.loads(json.dumps(setup.to_dict()))

    def flat(d: Any, prefix: str = "") -> dict[str, Any]:
        if not isinstance(d, dict):
            return {prefix[:-1]: d}
        return {k: v for key, val in d.items() for k, v in flat(val, f"{prefix}{key}.").items()}

    a, b = {**ADDED, **flat(saved)}, flat(now)
    method = a.get("method")
    return sorted(k for k in a.keys() | b.keys()
                  if a.get(k) != b.get(k) and k not in ignore
                  and not (k.startswith("generate.") and k.split(".", 1)[1] in ignored)
                  and METHOD_ONLY.get(k, method) == method)
