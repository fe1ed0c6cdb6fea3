"""A text-to-3D wrapper around any radiance field: Magic3D's density blob and progressive hash levels.

sigma(p) = softplus(raw(p) + b(p)), b(p) = blob_density · (1 − ‖p − centre‖ / blob_radius), where raw is
the inner field's pre-activation density (its `log_density_head` output; `block(x)` gives log sigma with
the blob, which distillation matches); the blob makes the initial field a soft ball at the centre
(positions in world units). With `boxes` (LucidDreaming's object-centric blobs) there is one blob per
box instead, stretched per axis by its sides a_k: b(p) = max_k λ_k · (1 − ‖(p − c_k) ⊘ (r a_k)‖ /
blob_radius), r = box_ratio (0.625), so each starts as a soft ellipsoid of semi-axes r·blob_radius·a_k
(62.5 % of the half-box for the defaults); λ_k = blob_density, or with `scale_box_density` blob_density / s_k
(s_k: half the box's shortest side, its object's scale: a ray through a small object's blob is s_k times
shorter, so this makes every blob start as dense in its object's own frame as a lone object's), and with
`box_density_largest` as well blob_density · s_max / s_k (the largest object keeps blob_density). With
`empty_outside` the field has no density outside every
box (b = −1e4 there: the paper's −∞), so nothing grows where no object's clipped rays look. For a
hash-grid inner field, only the first `active_levels` levels of the encoding are used (the rest are
zeroed), so coarse levels settle before fine ones (`set_progress`). Colours are the inner field's.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from ..config import aabb_option, bounded
from ..errors import ConfigError
from .base import DEFAULT_DIRECTION, Aabb, Field, FieldConfig, box_scales, points_in_boxes, resolve_config
from .encodings import log_softplus

__all__ = ["BlobField", "BlobConfig", "BOX_RATIO"]

OUTSIDE = -1e4  # b(p) outside every box with empty_outside: softplus gives 0 (the paper's −∞, kept finite)
BOX_RATIO = 0.625  # LucidDreaming's blob per box: its axes are this share of the box's sides (times σ)


@dataclass
class BlobConfig(FieldConfig):
    """Options of `BlobField`: the inner field's config (`Field.to_dict` form), the blob's peak density
    b(centre) (1/scene-unit, before the softplus) and radius (world units), hash levels active at the
    start (None: all; clamped to [1, n_levels]) and now; `aabb` None: the inner field's box; `contract`
    mirrors the inner field's (the inner field does the encoding)."""

    aabb: Aabb | None = aabb_option(None)
    inner: dict[str, Any] = dataclasses.field(default_factory=dict)
    blob_density: float = 10.0
    blob_radius: float = bounded(0.5, lo=1e-6)
    centre: tuple[float, float, float] = (0.0, 0.0, 0.0)
    boxes: list[list[float]] = dataclasses.field(default_factory=list)  # [xmin,ymin,zmin,xmax,ymax,zmax] each
    box_ratio: float = bounded(BOX_RATIO, lo=1e-6)
    empty_outside: bool = False  # with boxes: no density outside every box
    scale_box_density: bool = False  # with boxes: box k's peak density is blob_density / (half its shortest side)
    box_density_largest: bool = False  # ... times the largest such half side (the largest box keeps blob_density)
    start_levels: int | None = bounded(None, lo=0)
    active_levels: int | None = bounded(None, lo=0)


class BlobField(Field):
    """See the module docstring. `config.inner`: a field config (`Field.to_dict` form)."""

    name = "blob"
    config_class = BlobConfig
    config: BlobConfig

    def __init__(self, config: BlobConfig | None = None, **overrides: Any) -> None:
        from . import build_field
        from .hashgrid import HashGridField

        c = resolve_config(BlobConfig, config, overrides)
        field = build_field(c.inner)
        levels = field.config.n_levels if isinstance(field, HashGridField) else 0
        start = levels if c.start_levels is None else max(1, min(c.start_levels, levels))
        active = start if c.active_levels is None else c.active_levels
        aabb = field.aabb.tolist() if c.aabb is None else c.aabb
        if c.contract and not field.contract:
            raise ConfigError("field.contract: set it on the inner field (blob.inner.contract)")
        super().__init__(dataclasses.replace(c, inner=field.to_dict(), aabb=aabb, active_levels=active,
                                             contract=field.contract))
        self.inner = field
        self.register_buffer("centre", torch.tensor(c.centre, dtype=torch.float32))
        boxes = torch.tensor(c.boxes, dtype=torch.float32).reshape(-1, 6)
        if len(boxes) and not (boxes[:, 3:] > boxes[:, :3]).all():
            raise ConfigError("field.boxes: every box needs max > min on each axis")
        self.register_buffer("box_centres", 0.5 * (boxes[:, :3] + boxes[:, 3:]), persistent=False)
        self.register_buffer("box_spread", c.box_ratio * (boxes[:, 3:] - boxes[:, :3]), persistent=False)
        self.register_buffer("boxes", boxes, persistent=False)
        scale = box_scales(boxes)  # each box's object scale s_k
        peak = c.blob_density / scale if c.scale_box_density and len(boxes) else None
        if peak is not None and c.box_density_largest:
            peak = peak * scale.max()
        self.register_buffer("box_peak", peak, persistent=False)  # [K] per-box peaks, or None: blob_density
        # box tables on the same boxes and empty_outside: one box membership per evaluation serves both
        self.share_inside = bool(c.empty_outside and len(boxes) and isinstance(field, HashGridField)
                                 and torch.equal(field.boxes.cpu(), boxes))
        self.n_levels = levels  # hash levels of the inner field (0: not a hash grid)
        self.start_levels = start
        self.sh_degree, self.geo_features = field.sh_degree, field.geo_features

    @property
    def active_levels(self) -> int:
        """Hash levels of the inner field in use now (the rest of the encoding is zeroed)."""
        return int(self.config.active_levels or 0)

    def set_progress(self, progress: float) -> None:
        """Unlock hash levels linearly from start_levels (progress 0) to all of them (progress 0.5)."""
        if self.n_levels:
            f = min(max(progress / 0.5, 0.0), 1.0)
            active = int(round(self.start_levels + f * (self.n_levels - self.start_levels)))
            if active != self.config.active_levels:
                self.config = dataclasses.replace(self.config, active_levels=active)

    def to_dict(self) -> dict[str, Any]:
        """JSON-able config of the current state, the inner field's included (it may have grown)."""
        return {**super().to_dict(), "inner": self.inner.to_dict()}

    def bias(self, x: Tensor, inside: Tensor | None = None) -> Tensor:
        """b(p) [N] for world positions x [N,3] (one blob, or the largest of the boxes' blobs; `inside` [N, K]:
        `points_in_boxes(x, boxes)` when the caller has it)."""
        radius = self.config.blob_radius
        if len(self.box_centres):
            d2 = b = None  # max over boxes of λ_k(1 − d_k/σ) (a loop: no [N, K, 3]); one λ: the nearest box
            x0, x1, x2 = x.unbind(1)  # per column: 2.7x faster on a CPU than [N, 3] arithmetic and a row sum
            for k, (c, s) in enumerate(zip(self.box_centres.to(x), self.box_spread.to(x), strict=True)):
                uk = ((x0 - c[0]) / s[0]).square() + ((x1 - c[1]) / s[1]).square() + ((x2 - c[2]) / s[2]).square()
                if self.box_peak is None:
                    d2 = uk if d2 is None else torch.minimum(d2, uk)
                else:
                    bk = self.box_peak[k].to(x) * (1.0 - uk.sqrt() / radius)
                    b = bk if b is None else torch.maximum(b, bk)
            if b is None:
                b = self.config.blob_density * (1.0 - d2.sqrt() / radius)
        else:
            b = self.config.blob_density * (1.0 - (x - self.centre.to(x)).norm(dim=-1) / radius)
        if self.config.empty_outside and len(self.boxes):
            inside = points_in_boxes(x, self.boxes) if inside is None else inside
            b = torch.where(inside.any(dim=1), b, b.new_tensor(OUTSIDE))
        return b

    def encode(self, x: Tensor, inside: Tensor | None = None) -> Tensor:
        """The inner field's features of x [N, 3] (world); a hash grid's locked levels read 0 (not looked up)."""
        if self.n_levels:
            return self.inner.encode(x, inside, levels=self.active_levels)
        return self.inner.encode(x)

    def _inside(self, x: Tensor) -> Tensor | None:
        """points_in_boxes(x, boxes) when the inner field's box tables and the bias both want it, else None."""
        return points_in_boxes(x, self.boxes) if self.share_inside else None

    def _preactivation(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """(raw(x) + b(x) [N], geometry features [N, G]) for world positions x [N, 3]."""
        inside = self._inside(x)
        raw, geo = self.inner.log_density_head(self.encode(x, inside))
        return raw.reshape(-1) + self.bias(x, inside), geo

    def block(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """World positions [N, 3] -> (log sigma [N] with sigma = softplus(raw + b(x)), geometry features)."""
        z, geo = self._preactivation(x)
        return log_softplus(z), geo

    def log_density_head(self, feat: Tensor) -> tuple[Tensor, Tensor]:
        """Not defined: the blob's density depends on the position, not only on the features."""
        raise TypeError("BlobField's density depends on the position: use block(x)")

    def density(self, x: Tensor) -> Tensor:
        inside = self._inside(x)
        return F.softplus(self.inner.log_density(self.encode(x, inside)).reshape(-1) + self.bias(x, inside))

    def forward(self, x: Tensor, d: Tensor | None = None) -> tuple[Tensor, Tensor]:
        if d is None:
            d = x.new_tensor(DEFAULT_DIRECTION).expand(x.shape[0], 3)
        z, geo = self._preactivation(x)
        return F.softplus(z), self.inner.color_head(geo, d)

    def forward_rays(self, x: Tensor, rays_d: Tensor, ray_indices: Tensor) -> tuple[Tensor, Tensor]:
        z, geo = self._preactivation(x)
        return F.softplus(z), self.inner.color_from_dirs(geo, self.inner.encode_dirs(rays_d)[ray_indices])

    def color_head(self, geo: Tensor, d: Tensor) -> Tensor:
        return self.inner.color_head(geo, d)

    def encode_dirs(self, d: Tensor) -> Tensor:
        return self.inner.encode_dirs(d)

    def color_from_dirs(self, geo: Tensor, d_enc: Tensor) -> Tensor:
        return self.inner.color_from_dirs(geo, d_enc)

    def param_groups(self, lr: float) -> list[dict[str, Any]]:
        return self.inner.param_groups(lr)

    def on_step(self, step: int) -> bool:
        return self.inner.on_step(step)

    def regularization(self) -> Tensor:
        return self.inner.regularization()
