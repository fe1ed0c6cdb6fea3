"""Vanilla NeRF field: frequency encoding -> ReLU MLP trunk with a skip connection -> density and
geometry features -> small view-dependent colour MLP. Defaults are sized for CPU training."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..config import bounded
from .base import ColorHeadConfig, Field
from .encodings import log_softplus, positional_encoding, positional_encoding_dim
from .precision import Precision, run_in_precision

__all__ = ["MLPField", "MLPConfig"]


@dataclass
class MLPConfig(ColorHeadConfig):
    """Options of `MLPField`: `xyz_freqs` frequency bands, a trunk of `depth` ReLU layers of `width`
    (skip connection before layer `skip`; 0 or >= depth: none), `density_shift` added before the softplus,
    matmul `precision` (auto: bf16 on CPUs with AMX)."""

    xyz_freqs: int = bounded(10, 0, 16)
    width: int = bounded(128, 1, 4096)
    depth: int = bounded(4, 1, 32)
    skip: int = bounded(2, 0, 32)
    density_shift: float = -1.0
    precision: Precision = "auto"


class MLPField(Field):
    """NeRF MLP (Mildenhall et al. 2020) at CPU size.

    encode: box coords mapped to [-1, 1]^3 -> frequency encoding [N, 3 * (2 * xyz_freqs + 1)].
    density_head: `depth` ReLU layers of `width` (input re-concatenated before layer `skip`) ->
    sigma = softplus(raw + density_shift) [N] and `geo_features` [N, G].
    color_head: the shared design, [geo, SH(d, sh_degree)] -> `color_layers` x `color_hidden` -> sigmoid.
    precision: 'auto' computes the layers in bf16 on CPUs with AMX (see fields/precision.py).
    """

    name = "mlp"
    config_class = MLPConfig
    config: MLPConfig

    def __init__(self, config: MLPConfig | None = None, **overrides: Any) -> None:
        super().__init__(config, **overrides)
        c = self.config
        self.precision = c.precision
        self.xyz_freqs = c.xyz_freqs
        self.skip = c.skip if 0 < c.skip < c.depth else -1
        self.density_shift = c.density_shift
        enc_dim = positional_encoding_dim(3, c.xyz_freqs)
        self.trunk = nn.ModuleList(
            nn.Linear((enc_dim if i == 0 else c.width) + (enc_dim if i == self.skip else 0), c.width)
            for i in range(c.depth)
        )
        self.density_out = nn.Linear(c.width, 1 + c.geo_features)
        self._init_color_head(c)

    def encode(self, x: Tensor) -> Tensor:
        """x: [N, 3] world -> [N, 3 * (2 * xyz_freqs + 1)] frequency features of coords in [-1, 1]."""
        return positional_encoding(self.normalize(x) * 2.0 - 1.0, self.xyz_freqs)

    def log_density_head(self, feat: Tensor) -> tuple[Tensor, Tensor]:
        """feat: [N, E] -> log sigma [N] (sigma in 1/scene-unit), geo [N, geo_features]."""
        out = run_in_precision(self.precision, self._trunk, feat)
        return log_softplus(out[:, 0].float() + self.density_shift), out[:, 1:]

    def density_head(self, feat: Tensor) -> tuple[Tensor, Tensor]:
        """feat: [N, E] -> sigma [N] (1/scene-unit), geo [N, geo_features]."""
        out = run_in_precision(self.precision, self._trunk, feat)
        return F.softplus(out[:, 0] + self.density_shift), out[:, 1:]

    def color_from_dirs(self, geo: Tensor, d_enc: Tensor) -> Tensor:
        """geo: [N, G], encoded directions [N, K] -> rgb [N, 3] in [0, 1]."""
        return run_in_precision(self.precision, self.color_net, torch.cat([geo, d_enc], dim=-1))

    def _trunk(self, feat: Tensor) -> Tensor:
        """[N, E] encoded points -> raw [N, 1 + geo_features] (density logit, geometry features)."""
        h = feat
        for i, layer in enumerate(self.trunk):
            if i == self.skip:
                h = torch.cat([h, feat], dim=-1)
            h = F.relu(layer(h))
        return self.density_out(h)

    def param_groups(self, lr: float) -> list[dict[str, Any]]:
        """One group at `lr` (all parameters are network weights)."""
        return [{"params": list(self.parameters()), "lr": lr}]
