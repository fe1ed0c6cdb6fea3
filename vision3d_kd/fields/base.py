"""The `Field` interface: encoder -> density head -> colour head, and the config every family extends.

Positions are world coordinates [N, 3] inside the scene box `aabb` [2, 3] (world units) — or anywhere, for
a field with `contract` (unbounded captures: `aabb` is then the foreground box, see `contraction.py`); view
directions are unit vectors [N, 3] in the world frame. Density `sigma` is in 1/scene-unit (rays use
Euclidean `t`), colour `rgb` is linear in [0, 1].
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any, ClassVar, TypeVar

import torch
from torch import Tensor, nn

from ..cameras import DEFAULT_AABB
from ..config import CheckedConfig, aabb_option, bounded, dataclass_from
from ..errors import ConfigError
from .contraction import CONTRACTED_EXTENT, contract
from .encodings import log_softplus, mlp, sh_encoding, sh_encoding_dim

__all__ = [
    "Field",
    "FieldConfig",
    "ColorHeadConfig",
    "Aabb",
    "DEFAULT_AABB",
    "DEFAULT_DIRECTION",
    "BLOCK_GEO_FEATURES",
    "log_scaled_softplus",
    "points_in_boxes",
    "box_scales",
    "resolve_config",
    "config_from_dict",
    "jsonable",
]

# The block contract (Progressive Volume Distillation lines intermediate outputs up across families):
# every encoder ends in 1 density value + BLOCK_GEO_FEATURES geometry features, and every field uses the
# same colour head design (geo features + SH(d, degree 4) -> 2 x 64 ReLU -> sigmoid rgb).
BLOCK_GEO_FEATURES = 15

Aabb = tuple[tuple[float, float, float], tuple[float, float, float]]  # (min corner, max corner), world units
# Used when `forward` gets no view direction (e.g. colouring an exported mesh): looking down -z.
DEFAULT_DIRECTION: tuple[float, float, float] = (0.0, 0.0, -1.0)

C = TypeVar("C", bound="FieldConfig")


@dataclass
class FieldConfig(CheckedConfig):
    """Options every model in `fields/` has: the scene box `aabb` (world units) and `contract`: when
    True the field covers all of space (Mip-NeRF 360 scene contraction, `contraction.py`) and `aabb` is
    the foreground box, mapped onto the inner half of the encoding's domain. Runs saved before the option
    existed load as False. Subclasses, one per family, declare their options with bounds; `renamed` maps
    old persisted keys to current names."""

    section: ClassVar[str] = "field"
    renamed: ClassVar[dict[str, str]] = {}

    aabb: Aabb = aabb_option(DEFAULT_AABB)
    contract: bool = False


@dataclass
class ColorHeadConfig(FieldConfig):
    """Options of the shared colour head: `geo_features` (G, the PVD block width: geometry features after
    the density value), `color_layers` hidden ReLU layers of `color_hidden`, SH bands `sh_degree` (1..4)."""

    geo_features: int = bounded(BLOCK_GEO_FEATURES, 1, 4096)
    color_hidden: int = bounded(64, 1, 4096)
    color_layers: int = bounded(2, 0, 16)
    sh_degree: int = bounded(4, 1, 4)


def resolve_config(klass: type[C], config: C | None, overrides: dict[str, Any]) -> C:
    """`config` (default: klass()) with keyword `overrides` applied; always checked by `klass` itself.
    A config of the wrong class or an unknown keyword is a programming error (TypeError)."""
    if config is None:
        return klass(**overrides)
    if not isinstance(config, klass):
        raise TypeError(f"expected a {klass.__name__}, got {type(config).__name__}")
    return dataclasses.replace(config, **overrides) if overrides else config


def config_from_dict(klass: type[C], cfg: Any, name: str) -> C:
    """The `klass` config of a `to_dict`-style mapping {"field": name, "aabb": ..., **options}; old option
    names (`klass.renamed`) are accepted. ConfigError for another field name, unknown or bad options."""
    if not isinstance(cfg, dict):
        raise ConfigError(f"field config must be a mapping, got {type(cfg).__name__}")
    opts = dict(cfg)
    given = opts.pop("field", name)
    if given != name:
        raise ConfigError(f"field config names {given!r} but is being built as {name!r}")
    for old, new in klass.renamed.items():
        if old in opts:
            value = opts.pop(old)
            if new in opts and opts[new] != value:
                raise ConfigError(f"field.{old} is the old name of field.{new}; give only {new}")
            opts[new] = value
    return dataclass_from(klass, opts, "field")


def points_in_boxes(x: Tensor, boxes: Tensor) -> Tensor:
    """[N, K] bool: whether point x[n] (world, [N, 3]) lies in box k of `boxes` [K, 6] (xmin, ymin, zmin,
    xmax, ymax, zmax; faces included)."""
    boxes = boxes.to(x)
    if not len(boxes):
        return torch.zeros(x.shape[0], 0, dtype=torch.bool, device=x.device)
    # six compares on the columns per box: 4-5x faster on a CPU than one [N, K, 3] broadcast and .all
    c0, c1, c2 = x.unbind(1)
    return torch.stack([(c0 >= b[0]) & (c0 <= b[3]) & (c1 >= b[1]) & (c1 <= b[4]) & (c2 >= b[2]) & (c2 <= b[5])
                        for b in boxes], dim=1)


def box_scales(boxes: Tensor | list[list[float]]) -> Tensor:
    """[K]: the scale of the object each box of `boxes` [K, 6] (xmin, ymin, zmin, xmax, ymax, zmax; world units)
    holds, half the box's shortest side (what puts a [−1, 1]³ object inside it); nested lists in float64."""
    b = boxes if isinstance(boxes, Tensor) else torch.as_tensor(boxes, dtype=torch.float64).reshape(-1, 6)
    return 0.5 * (b[:, 3:] - b[:, :3]).amin(dim=1)


def log_scaled_softplus(z: Tensor, scale: float = 1.0) -> Tensor:
    """log(scale * softplus(z)), exact for every finite z (no -inf, finite gradients)."""
    return math.log(scale) + log_softplus(z)


class Field(nn.Module):
    """A radiance field over the box `aabb`: `encode` -> `density_head` -> `color_head`.

    Subclasses set `name` and `config_class` (their `*Config`), take a config (or keyword overrides of
    its defaults, checked the same way) and keep the current state in `self.config` (e.g. the resolution
    after upsampling), implement `encode` and `log_density_head`, and build the shared colour head with
    `_init_color_head`.
    """

    name: ClassVar[str] = ""
    config_class: ClassVar[type[FieldConfig]] = FieldConfig

    def __init__(self, config: FieldConfig | None = None, **overrides: Any) -> None:
        super().__init__()
        self.config = resolve_config(self.config_class, config, overrides)
        self.register_buffer("aabb", torch.tensor(self.config.aabb, dtype=torch.float32))
        self.sh_degree, self.geo_features = 0, 0  # set by _init_color_head; 0: no shared colour head

    # ----------------------------------------------------------------------------------- stages
    @property
    def contract(self) -> bool:
        """True when the field covers all of space through scene contraction (`aabb`: the foreground)."""
        return bool(self.config.contract)

    def normalize(self, x: Tensor) -> Tensor:
        """World positions [N, 3] -> encoding coordinates in [0, 1]^3: the box mapped onto [0, 1]^3
        (clamped outside it), or with `contract`, contract(x, aabb) in [-2, 2]^3 mapped onto [0, 1]^3
        (the box is the inner [0.25, 0.75]^3)."""
        if self.contract:
            e = CONTRACTED_EXTENT
            return ((contract(x, self.aabb) + e) / (2.0 * e)).clamp(0.0, 1.0)
        lo, hi = self.aabb[0], self.aabb[1]
        return ((x - lo) / (hi - lo)).clamp(0.0, 1.0)

    def encode(self, x: Tensor) -> Tensor:
        """World positions [N, 3] -> features [N, E]."""
        raise NotImplementedError

    def log_density_head(self, feat: Tensor) -> tuple[Tensor, Tensor]:
        """Features [N, E] -> (log sigma [N] (sigma in 1/scene-unit), geometry features [N, G]).

        The block every family ends in; distillation matches it across families."""
        raise NotImplementedError

    def log_density(self, feat: Tensor) -> Tensor:
        """Features [N, E] -> log sigma [N] alone, equal to `log_density_head`'s first output (a family may skip
        building its geometry features)."""
        return self.log_density_head(feat)[0]

    def density_head(self, feat: Tensor) -> tuple[Tensor, Tensor]:
        """Features [N, E] -> (sigma [N] >= 0 in 1/scene-unit, geometry features [N, G])."""
        log_sigma, geo = self.log_density_head(feat)
        return torch.exp(log_sigma), geo

    def _init_color_head(self, c: ColorHeadConfig) -> None:
        """The shared colour head: [geo (G), SH(d, sh_degree bands)] -> color_layers x color_hidden ReLU
        -> sigmoid rgb. Sets `geo_features`, `sh_degree` and the module `color_net`."""
        self.geo_features, self.sh_degree = c.geo_features, c.sh_degree
        self.color_net = self._color_mlp(c)

    @staticmethod
    def _color_mlp(c: ColorHeadConfig) -> nn.Module:
        """A fresh colour MLP of config `c`: [geo (G), SH(d)] -> color_layers x color_hidden ReLU -> sigmoid rgb."""
        return mlp(c.geo_features + sh_encoding_dim(c.sh_degree), c.color_hidden, c.color_layers, 3, nn.Sigmoid())

    def encode_dirs(self, d: Tensor) -> Tensor:
        """Unit view directions [R, 3] (world) -> real SH basis values [R, sh_degree**2].

        Split from the colour head so renderers can encode once per ray, not once per sample. A field
        without the shared colour head (sh_degree 0) gets the directions unchanged."""
        return sh_encoding(d, self.sh_degree) if self.sh_degree else d

    def color_from_dirs(self, geo: Tensor, d_enc: Tensor) -> Tensor:
        """Geometry features [N, G] and encoded directions [N, K] -> rgb [N, 3] in [0, 1]."""
        return self.color_net(torch.cat([geo, d_enc], dim=-1))

    def color_head(self, geo: Tensor, d: Tensor) -> Tensor:
        """Geometry features [N, G] and unit view directions [N, 3] (world) -> rgb [N, 3] in [0, 1]."""
        return self.color_from_dirs(geo, self.encode_dirs(d))

    def forward(self, x: Tensor, d: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """x: [N, 3] world positions, d: [N, 3] unit view directions (None: DEFAULT_DIRECTION).

        Returns sigma [N] (1/scene-unit) and rgb [N, 3] in [0, 1].
        """
        if d is None:
            d = x.new_tensor(DEFAULT_DIRECTION).expand(x.shape[0], 3)
        sigma, geo = self.density_head(self.encode(x))
        return sigma, self.color_head(geo, d)

    def forward_rays(self, x: Tensor, rays_d: Tensor, ray_indices: Tensor) -> tuple[Tensor, Tensor]:
        """Packed samples: x [S, 3] world, rays_d [R, 3] unit, ray_indices [S] -> (sigma [S], rgb [S, 3]).

        Same values as forward(x, rays_d[ray_indices]); directions are encoded once per ray."""
        sigma, geo = self.density_head(self.encode(x))
        return sigma, self.color_from_dirs(geo, self.encode_dirs(rays_d)[ray_indices])

    def density(self, x: Tensor) -> Tensor:
        """Density only: x [N, 3] world -> sigma [N] (1/scene-unit). Skips the colour head."""
        return self.density_head(self.encode(x))[0]

    def block(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """World positions [N, 3] -> (log sigma [N], sigma in 1/scene-unit; geometry features [N, G]): what
        every family computes before its colour head, and what distillation matches across families."""
        return self.log_density_head(self.encode(x))

    # ----------------------------------------------------------------------------------- training
    def param_groups(self, lr: float) -> list[dict[str, Any]]:
        """Optimizer parameter groups; the default is one group at `lr`."""
        return [{"params": [p for p in self.parameters() if p.requires_grad], "lr": lr}]

    def on_step(self, step: int) -> bool:
        """Training-schedule hook called before each step; True if parameters were replaced."""
        return False

    def regularization(self) -> Tensor:
        """Scalar extra loss, already weighted (0 unless the family defines one)."""
        return self.aabb.new_zeros(())

    # ----------------------------------------------------------------------------------- config
    def to_dict(self) -> dict[str, Any]:
        """JSON-able config: {"field": name, "aabb": [[...], [...]], **options} of the current state."""
        return {"field": self.name, **jsonable(dataclasses.asdict(self.config))}

    @classmethod
    def from_dict(cls, cfg: dict[str, Any]) -> Field:
        """Build from a `to_dict`-style config; unknown keys or a wrong "field" name raise ConfigError."""
        return cls(config_from_dict(cls.config_class, cfg, cls.name))

    def extra_repr(self) -> str:
        return f"name={self.name!r}, config={self.config}"


def jsonable(value: Any) -> Any:
    """Tuples -> lists recursively, so configs survive a JSON round trip unchanged."""
    if isinstance(value, dict):
        return {k: jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    return value
