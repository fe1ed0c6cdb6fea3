"""A text-to-3D wrapper around any radiance field: Magic3D's density blob and progressive hash levels.

sigma(p) = softplus(raw(p) + b(p)), b(p) = blob_density · (1 − ‖p − centre‖ / blob_radius), where raw is
the inner field's pre-activation density (its `log_density_head` output); the blob makes the initial
field a soft ball at the centre (positions in world units). For a hash-grid inner field, only the first
`active_levels` levels of the encoding are used (the rest are zeroed), so coarse levels settle before
fine ones (`set_progress`). Colours are the inner field's.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from .base import DEFAULT_DIRECTION, Field, check_float

__all__ = ["BlobField"]


class BlobField(Field):
    """See the module docstring. `inner`: a field config (`Field.to_dict` form)."""

    name = "blob"

    def __init__(self, *, inner: dict[str, Any], blob_density: float = 10.0, blob_radius: float = 0.5,
                 centre: tuple[float, float, float] = (0.0, 0.0, 0.0), start_levels: int | None = None,
                 active_levels: int | None = None, aabb: Any = None) -> None:
        from . import build_field

        field = build_field(inner)
        super().__init__(field.aabb.tolist() if aabb is None else aabb)
        self.inner = field
        blob_density = check_float("blob_density", blob_density)
        blob_radius = check_float("blob_radius", blob_radius, 1e-6)
        self.register_buffer("centre", torch.tensor(centre, dtype=torch.float32).reshape(3))
        levels = int(field.config.get("n_levels", 0)) if field.name == "hashgrid" else 0
        self.n_levels, self.n_features = levels, int(field.config.get("n_features", 1))
        start = levels if start_levels is None else max(1, min(int(start_levels), levels))
        self.start_levels = start
        self.active_levels = start if active_levels is None else int(active_levels)
        self.sh_degree, self.geo_features = field.sh_degree, field.geo_features
        self.config = dict(inner=field.to_dict(), blob_density=blob_density, blob_radius=blob_radius,
                           centre=list(centre), start_levels=start_levels, active_levels=self.active_levels)

    def set_progress(self, progress: float) -> None:
        """Unlock hash levels linearly from start_levels (progress 0) to all of them (progress 0.5)."""
        if self.n_levels:
            f = min(max(progress / 0.5, 0.0), 1.0)
            self.active_levels = int(round(self.start_levels + f * (self.n_levels - self.start_levels)))
            self.config["active_levels"] = self.active_levels

    def bias(self, x: Tensor) -> Tensor:
        """b(p) [N] for world positions x [N,3]."""
        d = (x - self.centre.to(x)).norm(dim=-1)
        return self.config["blob_density"] * (1.0 - d / self.config["blob_radius"])

    def encode(self, x: Tensor) -> Tensor:
        feat = self.inner.encode(x)
        if self.n_levels and self.active_levels < self.n_levels:
            keep = self.active_levels * self.n_features
            feat = torch.cat([feat[:, :keep], torch.zeros_like(feat[:, keep:])], dim=1)
        return feat

    def _sigma(self, x: Tensor) -> tuple[Tensor, Tensor]:
        raw, geo = self.inner.log_density_head(self.encode(x))
        return F.softplus(raw.reshape(-1) + self.bias(x)), geo

    def log_density_head(self, feat: Tensor) -> tuple[Tensor, Tensor]:
        return self.inner.log_density_head(feat)

    def density(self, x: Tensor) -> Tensor:
        return self._sigma(x)[0]

    def forward(self, x: Tensor, d: Tensor | None = None) -> tuple[Tensor, Tensor]:
        if d is None:
            d = x.new_tensor(DEFAULT_DIRECTION).expand(x.shape[0], 3)
        sigma, geo = self._sigma(x)
        return sigma, self.inner.color_head(geo, d)

    def forward_rays(self, x: Tensor, rays_d: Tensor, ray_indices: Tensor) -> tuple[Tensor, Tensor]:
        sigma, geo = self._sigma(x)
        return sigma, self.inner.color_from_dirs(geo, self.inner.encode_dirs(rays_d)[ray_indices])

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
