"""Dense voxel-grid field (DVGO / Plenoxels style): a density grid and an appearance-feature grid,
trilinearly interpolated, with a small view-dependent colour MLP."""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..kernels import sample_volume
from .base import BLOCK_GEO_FEATURES, DEFAULT_AABB, Field, check_float, check_int, check_schedule, log_scaled_softplus

__all__ = ["VoxelGridField", "resample_volume"]

_MAX_RES = 1024


def resample_volume(grid: Tensor, resolution: int) -> Tensor:
    """grid: [D, H, W, C] -> [resolution]*3 + [C], trilinear with align_corners=True."""
    vol = grid.permute(3, 0, 1, 2)[None]  # [1, C, D, H, W]
    out = F.interpolate(vol, size=(resolution,) * 3, mode="trilinear", align_corners=True)
    return out[0].permute(1, 2, 3, 0).contiguous()


def _tv(grid: Tensor) -> Tensor:
    """Mean squared finite difference of a [D, H, W, C] grid along D, H and W (summed)."""
    return sum((grid.diff(dim=dim) ** 2).mean() for dim in range(3))  # type: ignore[return-value]


class VoxelGridField(Field):
    """Dense grids over the box, cubic resolution R (grid axes D, H, W = world z, y, x).

    encode: x [N, 3] world -> [N, 1 + n_features] = (raw density, appearance features).
    density_head: sigma = density_scale * softplus(raw + shift) (1/scene-unit), where the shift makes
    raw = 0 give sigma = init_sigma, so the initial alpha is small.
    color_head: the shared design, [features, SH(d, sh_degree)] -> `color_layers` x `color_hidden` -> sigmoid.
    """

    name = "grid"

    def __init__(
        self,
        *,
        aabb: Any = DEFAULT_AABB,
        resolution: int = 96,
        upsample: Any = ((500, 128), (1000, 160)),
        n_features: int = BLOCK_GEO_FEATURES,
        feature_init_scale: float = 0.01,
        init_sigma: float = 0.05,
        density_scale: float = 25.0,
        sh_degree: int = 4,
        color_hidden: int = 64,
        color_layers: int = 2,
        tv_weight: float = 1e-4,
        tv_feature_weight: float = 0.0,
        mlp_lr_factor: float = 0.01,
    ) -> None:
        super().__init__(aabb)
        resolution = check_int("resolution", resolution, 2, _MAX_RES)
        sched = check_schedule("upsample", upsample, lo=2, hi=_MAX_RES)
        n_features = check_int("n_features", n_features, 1, 1024)
        feature_init_scale = check_float("feature_init_scale", feature_init_scale, 0.0)
        density_scale = check_float("density_scale", density_scale, 1e-6)
        init_sigma = check_float("init_sigma", init_sigma, 1e-8, 0.5 * density_scale)
        sh_degree = check_int("sh_degree", sh_degree, 1, 4)
        color_hidden = check_int("color_hidden", color_hidden, 1, 4096)
        color_layers = check_int("color_layers", color_layers, 0, 16)
        tv_weight = check_float("tv_weight", tv_weight, 0.0)
        tv_feature_weight = check_float("tv_feature_weight", tv_feature_weight, 0.0)
        mlp_lr_factor = check_float("mlp_lr_factor", mlp_lr_factor, 0.0)
        self.config = dict(
            resolution=resolution,
            upsample=[list(item) for item in sched],
            n_features=n_features,
            feature_init_scale=feature_init_scale,
            init_sigma=init_sigma,
            density_scale=density_scale,
            sh_degree=sh_degree,
            color_hidden=color_hidden,
            color_layers=color_layers,
            tv_weight=tv_weight,
            tv_feature_weight=tv_feature_weight,
            mlp_lr_factor=mlp_lr_factor,
        )
        self.schedule = sched
        self.density_scale = density_scale
        # softplus(shift) * density_scale == init_sigma  <=>  shift = log(expm1(init_sigma / scale))
        self.density_shift = math.log(math.expm1(init_sigma / density_scale))
        r = resolution
        self.density_grid = nn.Parameter(torch.zeros(r, r, r, 1))
        self.feature_grid = nn.Parameter(feature_init_scale * torch.randn(r, r, r, n_features))
        self._init_color_head(n_features, color_hidden, color_layers, sh_degree)

    def _coords(self, x: Tensor) -> Tensor:
        return self.normalize(x) * 2.0 - 1.0

    def _sigma(self, raw: Tensor) -> Tensor:
        return self.density_scale * F.softplus(raw + self.density_shift)

    def encode(self, x: Tensor) -> Tensor:
        """x: [N, 3] world -> [N, 1 + n_features] (raw density, appearance features)."""
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
            {"params": list(self.color_net.parameters()), "lr": lr * self.config["mlp_lr_factor"]},
        ]

    def on_step(self, step: int) -> bool:
        """Grow to the largest scheduled resolution with step <= `step` (never shrinks)."""
        target = max((res for s, res in self.schedule if s <= step), default=0)
        if target <= self.config["resolution"]:
            return False
        with torch.no_grad():
            self.density_grid = nn.Parameter(resample_volume(self.density_grid.detach(), target))
            self.feature_grid = nn.Parameter(resample_volume(self.feature_grid.detach(), target))
        self.config["resolution"] = target
        return True

    def regularization(self) -> Tensor:
        """tv_weight * TV(density grid) + tv_feature_weight * TV(feature grid)."""
        loss = self.aabb.new_zeros(())
        if self.config["tv_weight"] > 0:
            loss = loss + self.config["tv_weight"] * _tv(self.density_grid)
        if self.config["tv_feature_weight"] > 0:
            loss = loss + self.config["tv_feature_weight"] * _tv(self.feature_grid)
        return loss
