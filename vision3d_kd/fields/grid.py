"""Dense voxel-grid field (DVGO / Plenoxels style): a density grid and a geometry-feature grid (the PVD
block), trilinearly interpolated, with the shared view-dependent colour MLP."""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..config import bounded, schedule_option
from ..kernels import sample_volume
from .base import ColorHeadConfig, Field, log_scaled_softplus

__all__ = ["VoxelGridField", "VoxelGridConfig", "resample_volume"]

_MAX_RES = 1024


def resample_volume(grid: Tensor, resolution: int) -> Tensor:
    """grid: [D, H, W, C] -> [resolution]*3 + [C], trilinear with align_corners=True."""
    vol = grid.permute(3, 0, 1, 2)[None]  # [1, C, D, H, W]
    out = F.interpolate(vol, size=(resolution,) * 3, mode="trilinear", align_corners=True)
    return out[0].permute(1, 2, 3, 0).contiguous()


def _tv(grid: Tensor) -> Tensor:
    """Mean squared finite difference of a [D, H, W, C] grid along D, H and W (summed)."""
    return sum((grid.diff(dim=dim) ** 2).mean() for dim in range(3))  # type: ignore[return-value]


@dataclass
class VoxelGridConfig(ColorHeadConfig):
    """Options of `VoxelGridField`: cubic `resolution` (cells per box side) grown by the `upsample`
    schedule of [step, resolution] pairs; a feature grid of `geo_features` channels (persisted as
    `n_features` before) starting at N(0, feature_init_scale^2); sigma = density_scale * softplus(raw +
    shift) with raw = 0 giving `init_sigma` (1/scene-unit); TV weights; colour MLP at lr * mlp_lr_factor."""

    renamed: ClassVar[dict[str, str]] = {"n_features": "geo_features"}

    resolution: int = bounded(96, 2, _MAX_RES)
    upsample: tuple[tuple[int, int], ...] = schedule_option(((500, 128), (1000, 160)), lo=2, hi=_MAX_RES,
                                                            what="resolution")
    feature_init_scale: float = bounded(0.01, lo=0.0)
    init_sigma: float = bounded(0.05, lo=1e-8, hi=lambda c: 0.5 * c.density_scale)
    density_scale: float = bounded(25.0, lo=1e-6)
    tv_weight: float = bounded(1e-4, lo=0.0)
    tv_feature_weight: float = bounded(0.0, lo=0.0)
    mlp_lr_factor: float = bounded(0.01, lo=0.0)


class VoxelGridField(Field):
    """Dense grids over the box, cubic resolution R (grid axes D, H, W = world z, y, x).

    encode: x [N, 3] world -> [N, 1 + G] = (raw density, geometry features; G = geo_features).
    density_head: sigma = density_scale * softplus(raw + shift) (1/scene-unit), where the shift makes
    raw = 0 give sigma = init_sigma, so the initial opacity of a step is small.
    color_head: the shared design, [features, SH(d, sh_degree)] -> `color_layers` x `color_hidden` -> sigmoid.
    """

    name = "grid"
    config_class = VoxelGridConfig
    config: VoxelGridConfig

    def __init__(self, config: VoxelGridConfig | None = None, **overrides: Any) -> None:
        super().__init__(config, **overrides)
        c = self.config
        self.density_scale = c.density_scale
        # softplus(shift) * density_scale == init_sigma  <=>  shift = log(expm1(init_sigma / scale))
        self.density_shift = math.log(math.expm1(c.init_sigma / c.density_scale))
        r = c.resolution
        self.density_grid = nn.Parameter(torch.zeros(r, r, r, 1))
        self.feature_grid = nn.Parameter(c.feature_init_scale * torch.randn(r, r, r, c.geo_features))
        self._init_color_head(c)

    def _coords(self, x: Tensor) -> Tensor:
        return self.normalize(x) * 2.0 - 1.0

    def _sigma(self, raw: Tensor) -> Tensor:
        return self.density_scale * F.softplus(raw + self.density_shift)

    def encode(self, x: Tensor) -> Tensor:
        """x: [N, 3] world -> [N, 1 + G] (raw density, geometry features)."""
        n = self._coords(x)
        return torch.cat([sample_volume(self.density_grid, n), sample_volume(self.feature_grid, n)], dim=-1)

    def density_head(self, feat: Tensor) -> tuple[Tensor, Tensor]:
        """feat: [N, 1 + C] -> sigma [N] (1/scene-unit), geo [N, C]."""
        return self._sigma(feat[:, 0]), feat[:, 1:]

    def log_density_head(self, feat: Tensor) -> tuple[Tensor, Tensor]:
        """feat: [N, 1 + C] -> log sigma [N] (sigma in 1/scene-unit), geo [N, C]."""
        return log_scaled_softplus(feat[:, 0] + self.density_shift, self.density_scale), feat[:, 1:]

    def density(self, x: Tensor) -> Tensor:
        """x: [N, 3] world -> sigma [N]; samples only the density grid."""
        return self._sigma(sample_volume(self.density_grid, self._coords(x))[:, 0])

    def param_groups(self, lr: float) -> list[dict[str, Any]]:
        """Both grids at `lr`; colour MLP at `lr * mlp_lr_factor`."""
        return [
            {"params": [self.density_grid, self.feature_grid], "lr": lr},
            {"params": list(self.color_net.parameters()), "lr": lr * self.config.mlp_lr_factor},
        ]

    def on_step(self, step: int) -> bool:
        """Grow to the largest scheduled resolution with step <= `step` (never shrinks)."""
        target = max((res for s, res in self.config.upsample if s <= step), default=0)
        if target <= self.config.resolution:
            return False
        with torch.no_grad():
            self.density_grid = nn.Parameter(resample_volume(self.density_grid.detach(), target))
            self.feature_grid = nn.Parameter(resample_volume(self.feature_grid.detach(), target))
        self.config = dataclasses.replace(self.config, resolution=target)
        return True

    def regularization(self) -> Tensor:
        """tv_weight * TV(density grid) + tv_feature_weight * TV(feature grid)."""
        c, loss = self.config, self.aabb.new_zeros(())
        if c.tv_weight > 0:
            loss = loss + c.tv_weight * _tv(self.density_grid)
        if c.tv_feature_weight > 0:
            loss = loss + c.tv_feature_weight * _tv(self.feature_grid)
        return loss
