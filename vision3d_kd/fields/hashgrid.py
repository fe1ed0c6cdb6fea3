"""Instant-NGP field: multiresolution hash encoding -> tiny density MLP -> SH-conditioned colour MLP."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from ..config import bounded
from ..kernels import hash_encode
from .base import ColorHeadConfig, Field
from .encodings import mlp, trunc_exp

__all__ = ["HashGridField", "HashGridConfig", "level_resolutions"]


def level_resolutions(n_levels: int, base_resolution: int, max_resolution: int) -> Tensor:
    """Per-level grid resolutions [L] int32 (CPU), geometric from base to max (Instant-NGP eq. 2-3)."""
    if n_levels == 1:
        return torch.tensor([base_resolution], dtype=torch.int32)
    growth = math.exp((math.log(max_resolution) - math.log(base_resolution)) / (n_levels - 1))
    res = [int(math.floor(base_resolution * growth**level + 1e-6)) for level in range(n_levels)]
    return torch.tensor(res, dtype=torch.int32)


@dataclass
class HashGridConfig(ColorHeadConfig):
    """Options of `HashGridField`. Resolutions are grid cells per box side; `n_features` is the width of
    each hash level's feature (the encoding is n_levels * n_features wide), not the geo block width
    `geo_features`."""

    n_levels: int = bounded(16, 1, 32)
    n_features: int = bounded(2, 1, 16)
    log2_table_size: int = bounded(19, 4, 26)
    base_resolution: int = bounded(16, 1, 1 << 16)
    max_resolution: int = bounded(1024, lo=lambda c: c.base_resolution, hi=1 << 16)
    init_scale: float = bounded(1e-4, lo=0.0)  # hash entries start uniform in [-init_scale, init_scale]
    hidden: int = bounded(64, 1, 4096)  # width of the density MLP's hidden layer
    mlp_weight_decay: float = bounded(1e-6, lo=0.0)


class HashGridField(Field):
    """Instant-NGP (Mueller et al. 2022).

    encode: box coords [0, 1]^3 -> hash features [N, n_levels * n_features] (level-major).
    density_head: 1 hidden layer of `hidden` -> raw [N, 1 + geo_features];
    sigma = trunc_exp(raw[:, 0]) (1/scene-unit), geo = raw[:, 1:].
    color_head: [geo, SH(d, degree sh_degree)] -> 2 hidden layers of `color_hidden` -> sigmoid rgb.
    """

    name = "hashgrid"
    config_class = HashGridConfig
    config: HashGridConfig

    def __init__(self, config: HashGridConfig | None = None, **overrides: Any) -> None:
        super().__init__(config, **overrides)
        c = self.config
        self.mlp_weight_decay = c.mlp_weight_decay
        # Plain attribute, not a buffer: the kernel wants it as int32 on the CPU whatever the device.
        self.resolutions = level_resolutions(c.n_levels, c.base_resolution, c.max_resolution)
        table = torch.empty(c.n_levels, 1 << c.log2_table_size, c.n_features).uniform_(-c.init_scale, c.init_scale)
        self.table = nn.Parameter(table)
        self.density_net = mlp(c.n_levels * c.n_features, c.hidden, 1, 1 + c.geo_features)
        self._init_color_head(c)

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
