"""Instant-NGP field: multiresolution hash encoding -> tiny density MLP -> SH-conditioned colour MLP."""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor, nn

from ..kernels import hash_encode
from .base import BLOCK_GEO_FEATURES, DEFAULT_AABB, Field, check_float, check_int
from .encodings import mlp, trunc_exp

__all__ = ["HashGridField", "level_resolutions"]


def level_resolutions(n_levels: int, base_resolution: int, max_resolution: int) -> Tensor:
    """Per-level grid resolutions [L] int32 (CPU), geometric from base to max (Instant-NGP eq. 2-3)."""
    if n_levels == 1:
        return torch.tensor([base_resolution], dtype=torch.int32)
    growth = math.exp((math.log(max_resolution) - math.log(base_resolution)) / (n_levels - 1))
    res = [int(math.floor(base_resolution * growth**level + 1e-6)) for level in range(n_levels)]
    return torch.tensor(res, dtype=torch.int32)


class HashGridField(Field):
    """Instant-NGP (Mueller et al. 2022).

    encode: box coords [0, 1]^3 -> hash features [N, n_levels * n_features] (level-major).
    density_head: 1 hidden layer of `hidden` -> raw [N, 1 + geo_features];
    sigma = trunc_exp(raw[:, 0]) (1/scene-unit), geo = raw[:, 1:].
    color_head: [geo, SH(d, degree sh_degree)] -> 2 hidden layers of `color_hidden` -> sigmoid rgb.
    """

    name = "hashgrid"

    def __init__(
        self,
        *,
        aabb: Any = DEFAULT_AABB,
        n_levels: int = 16,
        n_features: int = 2,
        log2_table_size: int = 19,
        base_resolution: int = 16,
        max_resolution: int = 1024,
        init_scale: float = 1e-4,
        hidden: int = 64,
        geo_features: int = BLOCK_GEO_FEATURES,
        color_hidden: int = 64,
        color_layers: int = 2,
        sh_degree: int = 4,
        mlp_weight_decay: float = 1e-6,
    ) -> None:
        super().__init__(aabb)
        n_levels = check_int("n_levels", n_levels, 1, 32)
        n_features = check_int("n_features", n_features, 1, 16)
        log2_table_size = check_int("log2_table_size", log2_table_size, 4, 26)
        base_resolution = check_int("base_resolution", base_resolution, 1, 1 << 16)
        max_resolution = check_int("max_resolution", max_resolution, base_resolution, 1 << 16)
        init_scale = check_float("init_scale", init_scale, 0.0)
        hidden = check_int("hidden", hidden, 1, 4096)
        geo_features = check_int("geo_features", geo_features, 1, 4096)
        color_hidden = check_int("color_hidden", color_hidden, 1, 4096)
        color_layers = check_int("color_layers", color_layers, 0, 16)
        sh_degree = check_int("sh_degree", sh_degree, 1, 4)
        mlp_weight_decay = check_float("mlp_weight_decay", mlp_weight_decay, 0.0)
        self.config = dict(
            n_levels=n_levels,
            n_features=n_features,
            log2_table_size=log2_table_size,
            base_resolution=base_resolution,
            max_resolution=max_resolution,
            init_scale=init_scale,
            hidden=hidden,
            geo_features=geo_features,
            color_hidden=color_hidden,
            color_layers=color_layers,
            sh_degree=sh_degree,
            mlp_weight_decay=mlp_weight_decay,
        )
        self.mlp_weight_decay = mlp_weight_decay
        # Plain attribute, not a buffer: the kernel wants it as int32 on the CPU whatever the device.
        self.resolutions = level_resolutions(n_levels, base_resolution, max_resolution)
        table = torch.empty(n_levels, 1 << log2_table_size, n_features).uniform_(-init_scale, init_scale)
        self.table = nn.Parameter(table)
        self.density_net = mlp(n_levels * n_features, hidden, 1, 1 + geo_features)
        self._init_color_head(geo_features, color_hidden, color_layers, sh_degree)

    def encode(self, x: Tensor) -> Tensor:
        """x: [N, 3] world -> [N, n_levels * n_features] interpolated hash-table features."""
        return hash_encode(self.normalize(x), self.table, self.resolutions)

    def log_density_head(self, feat: Tensor) -> tuple[Tensor, Tensor]:
        """feat: [N, L*F] -> log sigma [N] (the raw output), geo [N, geo_features]."""
        raw = self.density_net(feat)
        return raw[:, 0], raw[:, 1:]

    def density_head(self, feat: Tensor) -> tuple[Tensor, Tensor]:
        """feat: [N, L*F] -> sigma [N] (1/scene-unit), geo [N, geo_features]."""
        raw = self.density_net(feat)
        return trunc_exp(raw[:, 0]), raw[:, 1:]

    def param_groups(self, lr: float) -> list[dict[str, Any]]:
        """Hash table at `lr` without decay; both MLPs at `lr` with weight decay `mlp_weight_decay`."""
        nets = list(self.density_net.parameters()) + list(self.color_net.parameters())
        return [
            {"params": [self.table], "lr": lr, "weight_decay": 0.0},
            {"params": nets, "lr": lr, "weight_decay": self.mlp_weight_decay},
        ]
