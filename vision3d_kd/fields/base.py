"""The `Field` interface: encoder -> density head -> colour head, plus config validation helpers.

Positions are world coordinates [N, 3] inside the scene box `aabb` [2, 3] (world units); view
directions are unit vectors [N, 3] in the world frame. Density `sigma` is in 1/scene-unit (rays use
Euclidean `t`), colour `rgb` is linear in [0, 1].
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Sequence
from typing import Any, ClassVar

import torch
from torch import Tensor, nn

from ..cameras import DEFAULT_AABB
from ..errors import ConfigError
from .encodings import log_softplus, mlp, sh_encoding, sh_encoding_dim

__all__ = [
    "Field",
    "DEFAULT_AABB",
    "DEFAULT_DIRECTION",
    "check_int",
    "check_float",
    "check_schedule",
    "check_aabb",
    "check_choice",
    "BLOCK_GEO_FEATURES",
    "log_scaled_softplus",
]

# The block contract (Progressive Volume Distillation lines intermediate outputs up across families):
# every encoder ends in 1 density value + BLOCK_GEO_FEATURES geometry features, and every field uses the
# same colour head design (geo features + SH(d, degree 4) -> 2 x 64 ReLU -> sigmoid rgb).
BLOCK_GEO_FEATURES = 15

# Used when `forward` gets no view direction (e.g. colouring an exported mesh): looking down -z.
DEFAULT_DIRECTION: tuple[float, float, float] = (0.0, 0.0, -1.0)


def check_int(name: str, value: Any, lo: int | None = None, hi: int | None = None) -> int:
    """`value` as an int in [lo, hi], else ConfigError."""
    if isinstance(value, bool) or not isinstance(value, int):
        if isinstance(value, float) and value.is_integer():
            value = int(value)
        else:
            raise ConfigError(f"field option {name} must be an integer, got {value!r}")
    if (lo is not None and value < lo) or (hi is not None and value > hi):
        raise ConfigError(f"field option {name}={value} out of range [{lo}, {hi}]")
    return int(value)


def check_float(name: str, value: Any, lo: float | None = None, hi: float | None = None) -> float:
    """`value` as a finite float in [lo, hi], else ConfigError."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ConfigError(f"field option {name} must be a finite number, got {value!r}")
    if (lo is not None and value < lo) or (hi is not None and value > hi):
        raise ConfigError(f"field option {name}={value} out of range [{lo}, {hi}]")
    return float(value)


def check_choice(name: str, value: Any, choices: Sequence[str]) -> str:
    """`value` if it is one of `choices`, else ConfigError."""
    if value not in choices:
        raise ConfigError(f"field option {name}={value!r} must be one of {', '.join(choices)}")
    return str(value)


def check_schedule(name: str, value: Any, lo: int = 1, hi: int | None = None) -> list[tuple[int, int]]:
    """A list of (step >= 0, resolution in [lo, hi]) pairs with increasing steps, else ConfigError."""
    if value is None:
        return []
    if isinstance(value, (str, bytes)) or not isinstance(value, Sequence):
        raise ConfigError(f"field option {name} must be a list of [step, resolution] pairs, got {value!r}")
    out: list[tuple[int, int]] = []
    for item in value:
        if isinstance(item, (str, bytes)) or not isinstance(item, Sequence) or len(item) != 2:
            raise ConfigError(f"field option {name} needs [step, resolution] pairs, got {item!r}")
        step = check_int(f"{name} step", item[0], lo=0)
        res = check_int(f"{name} resolution", item[1], lo=lo, hi=hi)
        if out and step <= out[-1][0]:
            raise ConfigError(f"field option {name} steps must increase, got {value!r}")
        out.append((step, res))
    return out


def check_aabb(value: Any) -> Tensor:
    """Scene box [2, 3] (min corner, max corner; world units) as a float32 tensor, else ConfigError."""
    try:
        box = torch.as_tensor(value, dtype=torch.float32).detach().cpu().clone()
    except (TypeError, ValueError, RuntimeError) as exc:
        msg = f"field option aabb must be [[xmin,ymin,zmin],[xmax,ymax,zmax]], got {value!r}"
        raise ConfigError(msg) from exc
    if box.shape != (2, 3) or not torch.isfinite(box).all() or not (box[1] > box[0]).all():
        msg = f"field option aabb must be [[xmin,ymin,zmin],[xmax,ymax,zmax]] with min < max, got {value!r}"
        raise ConfigError(msg)
    return box


def log_scaled_softplus(z: Tensor, scale: float = 1.0) -> Tensor:
    """log(scale * softplus(z)), exact for every finite z (no -inf, finite gradients)."""
    return math.log(scale) + log_softplus(z)


class Field(nn.Module):
    """A radiance field over the box `aabb`: `encode` -> `density_head` -> `color_head`.

    Subclasses set `name`, store their JSON-able constructor options in `self.config` (the current
    state: e.g. the resolution after upsampling), implement `encode` and `log_density_head`, and build
    the shared colour head with `_init_color_head`.
    """

    name: ClassVar[str] = ""

    def __init__(self, aabb: Any = DEFAULT_AABB) -> None:
        super().__init__()
        self.register_buffer("aabb", check_aabb(aabb))
        self.config: dict[str, Any] = {}
        self.sh_degree, self.geo_features = 0, 0  # set by _init_color_head; 0: no shared colour head

    # ----------------------------------------------------------------------------------- stages
    def normalize(self, x: Tensor) -> Tensor:
        """World positions [N, 3] -> box coordinates in [0, 1]^3 (clamped outside the box)."""
        lo, hi = self.aabb[0], self.aabb[1]
        return ((x - lo) / (hi - lo)).clamp(0.0, 1.0)

    def encode(self, x: Tensor) -> Tensor:
        """World positions [N, 3] -> features [N, E]."""
        raise NotImplementedError

    def log_density_head(self, feat: Tensor) -> tuple[Tensor, Tensor]:
        """Features [N, E] -> (log sigma [N] (sigma in 1/scene-unit), geometry features [N, G]).

        The block every family ends in; distillation matches it across families."""
        raise NotImplementedError

    def density_head(self, feat: Tensor) -> tuple[Tensor, Tensor]:
        """Features [N, E] -> (sigma [N] >= 0 in 1/scene-unit, geometry features [N, G])."""
        log_sigma, geo = self.log_density_head(feat)
        return torch.exp(log_sigma), geo

    def _init_color_head(self, geo_features: int, color_hidden: int, color_layers: int, sh_degree: int) -> None:
        """The shared colour head: [geo (G), SH(d, sh_degree bands)] -> color_layers x color_hidden ReLU
        -> sigmoid rgb. Sets `geo_features`, `sh_degree` and the module `color_net`."""
        self.geo_features, self.sh_degree = geo_features, sh_degree
        self.color_net = mlp(geo_features + sh_encoding_dim(sh_degree), color_hidden, color_layers, 3, nn.Sigmoid())

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
        return {"field": self.name, "aabb": self.aabb.detach().cpu().tolist(), **_jsonable(self.config)}

    @classmethod
    def from_dict(cls, cfg: dict[str, Any]) -> Field:
        """Build from a `to_dict`-style config; unknown keys or a wrong "field" name raise ConfigError."""
        if not isinstance(cfg, dict):
            raise ConfigError(f"field config must be a mapping, got {type(cfg).__name__}")
        opts = dict(cfg)
        name = opts.pop("field", cls.name)
        if name != cls.name:
            raise ConfigError(f"field config names {name!r} but is being built as {cls.name!r}")
        allowed = set(inspect.signature(cls.__init__).parameters) - {"self"}
        unknown = sorted(set(opts) - allowed)
        if unknown:
            raise ConfigError(f"unknown option(s) for field {cls.name!r}: {', '.join(map(str, unknown))}")
        return cls(**opts)

    def extra_repr(self) -> str:
        return f"name={self.name!r}, config={self.config}"


def _jsonable(value: Any) -> Any:
    """Tuples -> lists recursively, so configs survive a JSON round trip unchanged."""
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    return value
